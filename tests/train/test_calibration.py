"""The occupancy threshold is measured, not guessed: the hill climb of vae.calibration finds
the IoU-best threshold that a brute-force search over the same half-logit grid finds, and
`reconstruct` uses the stored one by default."""

from __future__ import annotations

import json

import pytest
import torch

from focusing.core.config import load_setup
from focusing.core.sparse.tensor import SparseTensor
from focusing.core.vae.calibration import (
    active_set_iou, calibrate_threshold, load_calibrated_threshold, save_calibration,
)
from focusing.core.vae.model import ShapeVAE

from _training_fixtures import TINY, _isolated_cache  # noqa: F401 (autouse fixture)


def test_active_set_iou_against_python_sets():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (40, 3), generator=g).unique(dim=0)
    b = torch.randint(0, 6, (40, 3), generator=g).unique(dim=0)
    inter, union = active_set_iou(a, b)
    sa, sb = {tuple(r) for r in a.tolist()}, {tuple(r) for r in b.tolist()}
    assert (inter, union) == (len(sa & sb), len(sa | sb))


@pytest.mark.parametrize("peak", [-2.5, 0.0, 1.5, 3.0])
def test_hill_climb_finds_the_brute_force_best_threshold(peak):
    cfg = load_setup("focusing", TINY)
    model = ShapeVAE(cfg)
    truth = torch.stack(torch.meshgrid(*[torch.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    extra = truth + 10  # voxels that are never in the truth

    def decode(z, thr):
        # a synthetic decoder: the kept set is best at `peak`; lower keeps false positives,
        # higher drops true voxels (a unimodal IoU, like real occupancy heads give)
        miss = int(min(max(thr - peak, 0.0), 4.0) * 12)
        false = int(min(max(peak - thr, 0.0), 4.0) * 12)
        kept = torch.cat([truth[miss:], extra[:false]])
        return SparseTensor(torch.cat([kept.new_zeros(len(kept), 1), kept], 1),
                            torch.zeros(len(kept), 1), 4 * model.latent_resolution)

    active = torch.tensor([[1, 1, 1], [2, 2, 2]])
    pts = (torch.rand(64, 3) - 0.5, torch.nn.functional.normalize(torch.randn(64, 3), dim=1))
    res = calibrate_threshold(model, [active], [pts], [truth], decode, start=0.0)
    brute = {}
    for k in range(-12, 13):
        thr = k / 2
        inter, union = active_set_iou(decode(None, thr).coords[:, 1:], truth)
        brute[thr] = inter / union
    best = max(brute, key=brute.get)
    assert res["threshold"] == pytest.approx(best) and res["iou"] == pytest.approx(brute[best])


def test_reconstruct_defaults_to_the_stored_threshold(tmp_path):
    assert load_calibrated_threshold(tmp_path) is None
    save_calibration(tmp_path, 7, {"threshold": 1.5, "iou": 0.9, "table": {}})
    assert load_calibrated_threshold(tmp_path) == 1.5
    assert json.loads((tmp_path / "calibration.json").read_text())["step"] == 7
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(ValueError, match="calibration.json"):
        load_calibrated_threshold(tmp_path)


def test_a_run_calibrates_at_its_end_unless_told_not_to(tiny_data, tmp_path):
    """The last checkpoint writes calibration.json; evaluation.calibrate_at_end = false (a probe
    of the steps alone) writes none, and reconstruct then falls back to the config's
    inference.occupancy_threshold."""
    from focusing.core.vae.train.trainer import Trainer

    for calibrate in (True, False):
        run = tmp_path / f"run-{calibrate}"
        trainer = Trainer(load_setup("focusing", TINY + [
            "train.steps=1", f"evaluation.calibrate_at_end={str(calibrate).lower()}"]),
            tiny_data, run, progress=False)
        trainer.fit()
        trainer.close()
        assert (run / "calibration.json").exists() is calibrate
        assert (load_calibrated_threshold(run) is None) is not calibrate
