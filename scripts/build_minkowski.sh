#!/usr/bin/env bash
# Build MinkowskiEngine 0.5.4 (CPU only, OpenBLAS) into the project's environment.
#
#   hatch run build-minkowski          # `python` is the hatch env's interpreter
#   PATH=.venv/bin:$PATH bash scripts/build_minkowski.sh
#
# Idempotent: exits at once when `import MinkowskiEngine` already works. The 2021 sdist
# needs three source fixes on today's stack, applied below by a scripted patch:
#   1. setup.py's BLAS auto-detection goes through numpy.distutils, which crashes against
#      current setuptools (`Compiler.__init__() takes from 1 to 3 positional arguments`):
#      default the BLAS to openblas so that detection never runs, in any pip step;
#   2. setup.py shells out to a bare `pip uninstall` while pip itself is building it: drop it;
#   3. Python >= 3.10 removed `collections.Sequence`: import it from collections.abc.
# Environment knobs: PYTHON (default: python), MAX_JOBS (default 2), MINKOWSKI_BUILD_DIR.
set -euo pipefail

ME_VERSION="0.5.4"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
BUILD_DIR="${MINKOWSKI_BUILD_DIR:-$ROOT/build/minkowski}"
export MAX_JOBS="${MAX_JOBS:-2}"

die() { echo "build_minkowski: ERROR: $*" >&2; exit 1; }
log() { echo "build_minkowski: $*"; }

command -v "$PY" >/dev/null 2>&1 || die "'$PY' not found; run through 'hatch run build-minkowski' or put .venv/bin on PATH"
"$PY" -c "import torch" 2>/dev/null || die "'$PY' ($(command -v "$PY")) has no torch; install the project environment first"
PY_EXE="$("$PY" -c 'import sys; print(sys.executable)')"
log "python: $PY_EXE"
# the sdist's setup.py shells out to a bare `pip`: make it this environment's
export PATH="$(dirname "$PY_EXE"):$PATH"

# A smoke test that also proves the 3.11 import fix suffices (aliases set before import).
SMOKE='
import collections, collections.abc
for _n in ("Sequence", "Mapping", "MutableMapping", "Iterable", "Callable"):
    if not hasattr(collections, _n):
        setattr(collections, _n, getattr(collections.abc, _n))
import torch, MinkowskiEngine as ME
x = ME.SparseTensor(torch.ones(2, 1), coordinates=torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.int32))
conv = ME.MinkowskiConvolution(1, 1, kernel_size=3, dimension=3)
conv(x).F.sum().backward()
print("MinkowskiEngine", ME.__version__, "works")
'

if "$PY" -c "$SMOKE" 2>/dev/null; then
    log "MinkowskiEngine already importable; nothing to do"
    exit 0
fi

START=$(date +%s)

# --- system BLAS (OpenBLAS headers + shared library) --------------------------------------
have_openblas() {
    { [ -e /usr/include/x86_64-linux-gnu/cblas.h ] || [ -e /usr/include/cblas.h ] \
        || [ -e /usr/include/openblas/cblas.h ] || [ -e /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ]; } \
        && { ldconfig -p 2>/dev/null | grep 'libopenblas\.so ' >/dev/null \
             || [ -e /usr/lib/x86_64-linux-gnu/libopenblas.so ]; }
}
# (grep reads all of ldconfig's output: `grep -q` exits at the first match, ldconfig then dies
# of SIGPIPE, and under pipefail the check failed right after a good install, as on 2026-12-03.)
if have_openblas; then
    log "OpenBLAS headers and library present; skipping apt"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "libopenblas-dev missing and not root (no sudo): install it first"
        SUDO="sudo"
    fi
    log "installing libopenblas-dev"
    $SUDO apt-get install -y libopenblas-dev || {
        $SUDO apt-get update && $SUDO apt-get install -y libopenblas-dev
    } || die "apt-get install libopenblas-dev failed"
    have_openblas || die "libopenblas-dev installed but cblas.h / libopenblas.so still not found"
fi

# ninja for the parallel compile; setuptools >= 70.1 builds wheels without the `wheel` package
"$PY" -m pip install --quiet ninja "setuptools>=70.1" || die "pip install ninja setuptools failed"

# --- fetch the sdist -----------------------------------------------------------------------
mkdir -p "$BUILD_DIR"
SDIST="$BUILD_DIR/MinkowskiEngine-$ME_VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
    log "downloading MinkowskiEngine $ME_VERSION sdist"
    # pip download prepares metadata, which runs setup.py (it imports torch, hence no build
    # isolation) and its numpy.distutils BLAS probe (which needs stdlib distutils to run).
    SETUPTOOLS_USE_DISTUTILS=stdlib "$PY" -m pip download --quiet --no-deps --no-binary :all: \
        --no-build-isolation "MinkowskiEngine==$ME_VERSION" -d "$BUILD_DIR" \
        || die "pip download MinkowskiEngine==$ME_VERSION failed"
fi
[ -f "$SDIST" ] || die "sdist not found at $SDIST after download"

SRC="$BUILD_DIR/MinkowskiEngine-$ME_VERSION"
rm -rf "$SRC"
tar -xzf "$SDIST" -C "$BUILD_DIR"

# --- patch ---------------------------------------------------------------------------------
"$PY" - "$SRC" <<'PATCH'
import pathlib
import sys

src = pathlib.Path(sys.argv[1])


def replace(rel, old, new):
    path = src / rel
    text = path.read_text()
    if old not in text:
        sys.exit(f"build_minkowski: patch anchor not found in {rel}: {old!r}")
    path.write_text(text.replace(old, new))


replace(
    "setup.py",
    'BLAS, argv = _argparse("--blas", argv, False)\n',
    'BLAS, argv = _argparse("--blas", argv, False)\n'
    '# focusing: never fall back to the numpy.distutils probe (crashes on current setuptools).\n'
    'if BLAS is False:\n'
    '    BLAS = os.environ.get("MINKOWSKI_BLAS", "openblas")\n',
)
replace("setup.py", 'run_command("pip", "uninstall", "MinkowskiEngine", "-y")\n', "")
for rel in (
    "MinkowskiEngine/MinkowskiCoordinateManager.py",
    "MinkowskiEngine/MinkowskiTensorField.py",
    "MinkowskiEngine/MinkowskiCommon.py",
    "MinkowskiEngine/utils/quantization.py",
):
    replace(rel, "from collections import Sequence\n", "from collections.abc import Sequence\n")
replace(
    "MinkowskiEngine/MinkowskiKernelGenerator.py",
    "from collections import Sequence, namedtuple\n",
    "from collections import namedtuple\nfrom collections.abc import Sequence\n",
)
print("build_minkowski: source patched")
PATCH

# --- build and install ---------------------------------------------------------------------
log "compiling (--cpu_only --blas=openblas, MAX_JOBS=$MAX_JOBS); this takes several minutes"
"$PY" -m pip install --no-deps --no-build-isolation \
    -C--global-option=--cpu_only -C--global-option=--blas=openblas \
    "$SRC" || die "MinkowskiEngine build failed (see the compiler output above)"

"$PY" -c "$SMOKE" || die "MinkowskiEngine installed but the import/convolution smoke test failed"
END=$(date +%s)
log "built and installed MinkowskiEngine $ME_VERSION in $((END - START)) s"
