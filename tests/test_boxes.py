import math

import pytest
import torch

from diffdet.boxes import DELTA_SCALE_CLAMP, apply_deltas, check_boxes_xyxy, cxcywh01_to_xyxy, image_whwh, xyxy_to_cxcywh01


def test_normalised_round_trip():
    whwh = image_whwh(torch.tensor([[480, 640]]))
    assert whwh.tolist() == [[640, 480, 640, 480]]
    boxes = torch.tensor([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 640.0, 480.0]])
    cxcywh = xyxy_to_cxcywh01(boxes, whwh)
    assert torch.allclose(cxcywh[1], torch.tensor([0.5, 0.5, 1.0, 1.0]))
    assert torch.allclose(cxcywh01_to_xyxy(cxcywh, whwh), boxes)


def test_zero_deltas_are_identity_and_scale_is_clamped():
    boxes = torch.tensor([[10.0, 10.0, 50.0, 30.0]])
    assert torch.allclose(apply_deltas(torch.zeros(1, 4), boxes, (2, 2, 1, 1)), boxes)
    moved = apply_deltas(torch.tensor([[2.0, 0.0, math.log(2), 0.0]]), boxes, (2, 2, 1, 1))
    # dx = 2 / 2 = 1 box width to the right; width doubled around the new centre.
    assert torch.allclose(moved, torch.tensor([[30.0, 10.0, 110.0, 30.0]]))
    huge = apply_deltas(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), boxes, (2, 2, 1, 1))
    assert (huge[0, 2] - huge[0, 0]).item() == pytest.approx(40 * 100000 / 16, rel=1e-4)
    assert (huge[0, 3] - huge[0, 1]).item() == pytest.approx(20 * 100000 / 16, rel=1e-4)


def test_delta_clamp_is_diffusiondets_not_detectron2s_default():
    # Golden value: DiffusionDet's head clamps dw/dh at log(100000 / 16); detectron2's generic default is log(1000 / 16).
    assert DELTA_SCALE_CLAMP == pytest.approx(8.740336742730447, abs=1e-12)
    # A 2-px box with dw = 5 (under the clamp): exp(5) * 2 = 296.83 px wide, not 125 px (the 1000/16 clamp).
    tiny = torch.tensor([[100.0, 100.0, 102.0, 102.0]])
    grown = apply_deltas(torch.tensor([[0.0, 0.0, 5.0, 0.0]]), tiny, (2, 2, 1, 1))
    assert (grown[0, 2] - grown[0, 0]).item() == pytest.approx(296.826318, rel=1e-6)
    assert (grown[0, 3] - grown[0, 1]).item() == pytest.approx(2.0)
    # Just past the clamp the width stops growing.
    capped = apply_deltas(torch.tensor([[0.0, 0.0, 9.0, 0.0]]), tiny, (2, 2, 1, 1))
    assert (capped[0, 2] - capped[0, 0]).item() == pytest.approx(2 * 100000 / 16, rel=1e-5)


def test_check_boxes_rejects_bad_boxes():
    check_boxes_xyxy(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="shape"):
        check_boxes_xyxy(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="x2 < x1"):
        check_boxes_xyxy(torch.tensor([[5.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        check_boxes_xyxy(torch.tensor([[float("nan"), 0.0, 1.0, 1.0]]))
