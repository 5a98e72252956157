"""Tests for diffdet.evaluate: COCO AP from in-memory ground truth and detections.

pycocotools semantics checked here: a detection matches at threshold t when IoU >= t (``ious < t`` is
skipped in COCOeval.evaluateImg), thresholds are linspace(0.5, 0.95, 10), AP averages 101-point interpolated
precision over the thresholds; values are reported in 0-100.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffdet.data import Sample
from diffdet.evaluate import coco_evaluate, format_table

CLASSES = ("a", "b", "c")


def make_gt() -> list[Sample]:
    """Three 100x100 boxes (all 'large' for COCO: area > 96^2) on two images; class 'c' has no gt."""
    return [
        Sample("img0.png", np.array([[0, 0, 100, 100], [200, 100, 300, 200]], np.float32), np.array([0, 1]), 0,
               (480, 640)),
        Sample("img1.png", np.array([[50, 50, 150, 150]], np.float32), np.array([0]), 1, (480, 640)),
    ]


def detections_from(gt: list[Sample], shift: tuple[float, float, float, float] = (0, 0, 0, 0)) -> list[dict]:
    return [{"image_id": s.image_id, "boxes_xyxy": torch.from_numpy(s.boxes_xyxy) + torch.tensor(shift),
             "scores": torch.full((len(s.labels),), 0.9), "labels": torch.from_numpy(s.labels)} for s in gt]


def test_perfect_detections_give_100() -> None:
    gt = make_gt()
    results = coco_evaluate(detections_from(gt), gt, CLASSES)
    assert results["AP"] == pytest.approx(100.0) and results["AP50"] == pytest.approx(100.0)
    assert results["AP75"] == pytest.approx(100.0) and results["APl"] == pytest.approx(100.0)
    assert results["APs"] is None and results["APm"] is None  # no small / medium objects
    assert results["per_class"] == {"a": pytest.approx(100.0), "b": pytest.approx(100.0), "c": None}


def test_known_iou_gives_exact_ap() -> None:
    """Cutting a 100x100 box to 100x62.5 gives IoU 0.625 with every gt: it passes t = 0.50, 0.55, 0.60 and fails
    the seven higher thresholds, so AP = 3/10 = 30.0, AP50 = 100, AP75 = 0."""
    gt = make_gt()
    results = coco_evaluate(detections_from(gt, shift=(0, 0, 0, -37.5)), gt, CLASSES)
    assert results["AP"] == pytest.approx(30.0)
    assert results["AP50"] == pytest.approx(100.0) and results["AP75"] == pytest.approx(0.0)
    assert results["per_class"]["a"] == pytest.approx(30.0)


def test_iou_exactly_at_threshold_counts() -> None:
    """IoU exactly 0.5 (a 100x50 half box) matches at t = 0.5 (pycocotools uses IoU >= t): AP = 1/10."""
    gt = make_gt()
    results = coco_evaluate(detections_from(gt, shift=(0, 0, 0, -50)), gt, CLASSES)
    assert results["AP"] == pytest.approx(10.0) and results["AP50"] == pytest.approx(100.0)


def test_image_without_detections_lowers_recall() -> None:
    """Image 1 gets no detections: class 'a' recall is 1/2, so precision is 1 on the recall points <= 0.5
    (51 of 101) and 0 beyond; class 'b' stays perfect."""
    gt = make_gt()
    detections = detections_from(gt)[:1]  # image 1 left out entirely
    results = coco_evaluate(detections, gt, CLASSES)
    recall_points = np.linspace(0.0, 1.0, 101)
    expected_a = 100.0 * (recall_points <= 0.5).sum() / 101
    assert results["per_class"]["a"] == pytest.approx(expected_a)
    assert results["per_class"]["b"] == pytest.approx(100.0)
    assert results["AP"] == pytest.approx((expected_a + 100.0) / 2)
    no_boxes = {"image_id": 1, "boxes_xyxy": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}
    empty = coco_evaluate(detections + [no_boxes], gt, CLASSES)  # an explicit empty entry counts the same
    assert empty["AP"] == pytest.approx(results["AP"])


def test_no_detections_at_all_and_dict_ground_truth() -> None:
    gt = [{"image_id": 3, "boxes_xyxy": np.array([[0, 0, 10, 10]]), "labels": [2], "size_hw": (20, 20)}]
    results = coco_evaluate([], gt, CLASSES)
    assert results["AP"] == 0.0 and results["per_class"] == {"a": None, "b": None, "c": 0.0}


def test_bad_inputs_and_table(capsys: pytest.CaptureFixture) -> None:
    gt = make_gt()
    with pytest.raises(ValueError, match="image_id 7"):
        coco_evaluate([{"image_id": 7, "boxes_xyxy": [[0, 0, 1, 1]], "scores": [1.0], "labels": [0]}], gt, CLASSES)
    with pytest.raises(ValueError, match="label 5"):
        coco_evaluate([], [{"image_id": 0, "boxes_xyxy": [[0, 0, 1, 1]], "labels": [5], "size_hw": (9, 9)}], CLASSES)
    results = coco_evaluate(detections_from(gt), gt, CLASSES)
    assert capsys.readouterr().out == ""  # pycocotools' prints are suppressed
    table = format_table(results)
    assert "AP50" in table and "100.00" in table and "mean" in table
    assert [line.split() for line in table.splitlines() if line.startswith("c ")] == [["c", "-"]]
