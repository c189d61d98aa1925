"""How good can a VAE trained on a TSDF target get? Mesh the target itself at output 128.

Run: hatch run python benchmarks/vae_target_ceiling.py [MESH]   (default fandisk.off)
Prints F@0.005, normal consistency and Chamfer L2 of FlexiCubes meshes extracted from the
view-fused TSDF, from the training target (geometry.tsdf.surface_tsdf: exact distance, fused
sign) and from the exact signed distance, on the children of the latent-32 active voxels.
"""
import time
import sys
import torch
from focusing.core.geometry.mesh import normalize_mesh
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.voxelize import surface_voxels, dilate_voxels
from focusing.core.geometry.camera import orbit_cameras
from focusing.core.geometry.raycast import raycast
from focusing.core.geometry.tsdf import fuse_view_tsdf
from focusing.core.geometry.distance import mesh_signed_distance
from focusing.core.geometry.tsdf import surface_tsdf
from focusing.core.sparseflex.field import field_from_corner_sdf
from focusing.core.sparseflex.flexicubes import extract_mesh
from focusing.core.geometry.mesh import Mesh
from focusing.core.metrics import evaluate
name = sys.argv[1] if len(sys.argv) > 1 else "fandisk.off"
mesh, c, s = normalize_mesh(load_mesh(f"examples/meshes/{name}", normalize=False))
R = 32
out = 4*R
vox = 1/out
trunc = 2*vox
act = dilate_voxels(surface_voxels(mesh, R), R)
# all children at 4R of latent active voxels
off = torch.stack(torch.meshgrid(*[torch.arange(4)]*3, indexing="ij"), -1).reshape(-1,3)
kids = (act[:, None, :]*4 + off[None]).reshape(-1,3)
act4 = dilate_voxels(surface_voxels(mesh, out), out)
print("latent", len(act), "children", len(kids), "gt4", len(act4))
def run(label, fn, coords):
    t=time.time()
    f = field_from_corner_sdf(coords, out, fn)
    m = extract_mesh(f)
    r = evaluate(Mesh(m.vertices.double().numpy(), m.faces.numpy(), None), mesh, n_points=100000)
    print(f"{label}: F={r['fscore']:.4f} NC={r['normal_consistency']:.4f} "
          f"CD={r['chamfer_l2']:.2e} floorF={r['floor_fscore']:.3f} ({time.time()-t:.1f}s)")
cache = {}
def exact(pos, b):
    t=time.time()
    d = mesh_signed_distance(mesh, pos.numpy())
    print(" sd time", time.time()-t, len(pos))
    return torch.as_tensor(d).clamp(-trunc, trunc)
for views, img in [(8, 96), (8, 128), (16,128)]:
    cams = orbit_cameras(views, fov_y_deg=55.0, width=img, height=img)
    V = torch.as_tensor(mesh.vertices)
    F = torch.as_tensor(mesh.faces, dtype=torch.long)
    depths = torch.stack([raycast(V, F, cc).depth for cc in cams])
    def fused(pos, b): return fuse_view_tsdf(pos, cams, depths, trunc)
    def combo(pos, b):
        return surface_tsdf(mesh, pos, cams, depths, trunc, sign_band=0.5 * vox)
    run(f"view-fused {views}x{img}", fused, kids)
    run(f"training target {views}x{img}", combo, kids)
run("exact kids", exact, kids)
run("exact gt4", exact, act4)
