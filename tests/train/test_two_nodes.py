"""Goal D4: two torchrun "nodes" on this machine (--nnodes 2, one process each, c10d rendezvous
on localhost) train on a prepared data set, streamed, and reach the weights of one process, to
the tolerance of the 2-process test (test_training.py).

Node 0 hosts the rendezvous store (is_host=1), node 1 joins it (is_host=0), as the first node
of a cluster job and the others would; c10d numbers the nodes itself (--node-rank is for the
static rendezvous), and neither starts training before both joined. Each rank reads only its
shard of every step (core.data.streaming, FOCUSING_STREAM_BYTES=0); rank 0 writes the run
folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from focusing.core.config import load_setup
from focusing.core.data.prepare import prepare_dataset

from meshdata import mesh_folder
from _training_fixtures import TINY

SETTINGS = TINY + ["train.batch_size=2"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    files = sorted((run / "checkpoints").glob("step_*.safetensors"))
    return load_file(files[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_two_torchrun_nodes_match_one_process(tmp_path):
    meshes = mesh_folder(tmp_path / "meshes", "couplingdown", "elephant-with-holes")
    data = tmp_path / "prepared"
    assert prepare_dataset(meshes, data, load_setup("focusing", SETTINGS),
                           progress=False).exit_code == 0
    common = ["-m", "focusing.core.cli", "train", "--setup", "focusing", "--data", str(data),
              "--steps", "2", "--quiet"]
    for item in SETTINGS:
        common += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1", FOCUSING_STREAM_BYTES="0")
    single = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "single")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]

    port = _free_port()
    nodes = []
    for node in (0, 1):
        launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                  "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", "focusing-d4",
                  "--rdzv-conf", f"is_host={int(node == 0)},join_timeout=120",
                  "--max-restarts", "0"]
        nodes.append(subprocess.Popen(
            [*launch, *common, "--out", str(tmp_path / "multi")], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [node.communicate(timeout=600)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, text in zip(nodes, outputs):
        assert node.returncode == 0, text[-3000:]
    assert "trained focusing to step 2" in "".join(outputs)
    a, b = _weights(tmp_path / "single"), _weights(tmp_path / "multi")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
