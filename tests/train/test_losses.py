"""Loss terms against independent computations: the TSDF term (eq. 5, plain and
sign-balanced) by hand, and the class-balanced occupancy BCE against its formula."""

from __future__ import annotations

import math

import pytest
import torch

from focusing.core.vae.train.losses import occupancy_loss, tsdf_loss

TRUNC = 0.25


def test_tsdf_loss_averages_inside_and_outside_means():
    pred = torch.tensor([0.1, 0.3, -0.2, 0.05, 0.9], dtype=torch.float64)
    target = torch.tensor([0.2, 1.0, -0.1, -0.5, 0.3], dtype=torch.float64)  # truncated to +-0.25
    valid = torch.tensor([True, True, True, True, False])
    # by hand: outside |0.1-0.2|, |0.3-0.25|; inside |-0.2+0.1|, |0.05+0.25|; the last is invalid
    outside = (0.1 + 0.05) / 2 / TRUNC
    inside = (0.1 + 0.3) / 2 / TRUNC
    assert (float(tsdf_loss(pred, target, valid, TRUNC, balanced=True))
            == pytest.approx(0.5 * (outside + inside)))
    plain = (0.1 + 0.05 + 0.1 + 0.3) / 4 / TRUNC  # eq. 5 as the paper writes it: one mean
    assert float(tsdf_loss(pred, target, valid, TRUNC)) == pytest.approx(plain)


def test_tsdf_loss_is_the_plain_mean_when_one_side_is_empty():
    pred = torch.tensor([0.0, 0.1, 0.4])
    target = torch.tensor([0.1, 0.1, 0.1])
    assert float(tsdf_loss(pred, target, torch.ones(3, dtype=torch.bool), TRUNC, balanced=True)) \
        == pytest.approx((0.1 + 0.0 + 0.3) / 3 / TRUNC)
    assert float(tsdf_loss(pred, target, torch.zeros(3, dtype=torch.bool), TRUNC)) == 0.0


def test_tsdf_loss_all_outside_prediction_is_not_a_minimum_for_a_minority_inside():
    """What loss.tsdf_balanced changes: with 1 inside corner in 10, the plain L1 mean rates
    'outside everywhere' 0.2 (its median); the balanced loss rates it 1.0."""
    target = torch.tensor([TRUNC] * 9 + [-TRUNC])
    all_outside = torch.full((10,), TRUNC)
    valid = torch.ones(10, dtype=torch.bool)
    assert float(tsdf_loss(all_outside, target, valid, TRUNC)) == pytest.approx(0.2)
    assert float(tsdf_loss(all_outside, target, valid, TRUNC, balanced=True)) == pytest.approx(1.0)
    assert float(tsdf_loss(target.clone(), target, valid, TRUNC, balanced=True)) == 0.0


def test_tsdf_loss_gradient_reaches_predictions_beyond_the_truncation():
    pred = torch.tensor([2.0, -3.0], requires_grad=True)
    tsdf_loss(pred, torch.tensor([0.1, -0.1]), torch.ones(2, dtype=torch.bool), TRUNC).backward()
    assert torch.all(pred.grad != 0)


def test_occupancy_loss_is_class_balanced_bce():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0], dtype=torch.float64)
    target = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    w = 3.0  # negatives / positives
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = (-w * math.log(sig(2.0)) - math.log(1 - sig(-1.0)) - math.log(1 - sig(0.5))
            - math.log(1 - sig(-3.0))) / 4
    assert float(occupancy_loss([logits], [target])) == pytest.approx(want)


def test_saturated_tsdf_loss_frees_only_far_corners_beyond_the_truncation_on_their_side():
    from focusing.core.vae.train.losses import tsdf_loss

    t = 0.5
    target = torch.tensor([0.9, 0.9, -2.0, -2.0, 0.2, 0.4], dtype=torch.float64)
    pred = torch.tensor([0.7, 0.3, -0.8, 0.1, -0.1, 0.55], dtype=torch.float64)
    valid = torch.ones(6, dtype=torch.bool)
    clamped = target.clamp(-t, t)
    plain = (pred - clamped).abs() / t
    assert torch.isclose(tsdf_loss(pred, target, valid, t), plain.mean())
    # corners 0 and 2 sit at the truncation and beyond it on their own side: they cost nothing;
    # corner 1 (short of it), corner 3 (wrong side) and the band corners (even corner 5, beyond
    # its target but inside the truncation) keep their L1
    expect = plain.clone()
    expect[[0, 2]] = 0.0
    assert torch.isclose(tsdf_loss(pred, target, valid, t, saturate=True), expect.mean())
