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


# ---------------------------------------------------------------------------------------------- issue 12

def write_crowd_dataset(root) -> tuple:
    """A COCO file (ids and category order unlike the class list, crowd regions, segmentation-like areas) with
    its images, and results in COCO form with detections on the crowd regions."""
    import json

    import cv2

    rng = np.random.default_rng(3)
    (root / "img").mkdir()
    categories = [{"id": 7, "name": "c"}, {"id": 3, "name": "b"}, {"id": 5, "name": "a"}]
    images, annotations, results = [], [], []
    for k in range(4):
        image_id = 10 + 3 * k
        cv2.imwrite(str(root / "img" / f"{k}.png"), np.zeros((120, 160, 3), np.uint8))
        images.append({"id": image_id, "file_name": f"{k}.png", "height": 120, "width": 160})
        for j in range(3):
            x, y = float(rng.integers(0, 100)), float(rng.integers(0, 60))
            w, h = float(rng.integers(8, 60)), float(rng.integers(8, 60))
            w, h = min(w, 160 - x), min(h, 120 - y)
            cat = categories[int(rng.integers(0, 3))]["id"]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x, y, w, h], "area": 0.7 * w * h, "iscrowd": 0})
            jitter = rng.normal(0, 3, 4)
            results.append({"image_id": image_id, "category_id": cat, "score": float(rng.uniform(0.3, 1.0)),
                            "bbox": [x + jitter[0], y + jitter[1], max(2.0, w + jitter[2]), max(2.0, h + jitter[3])]})
        # A crowd region (a group of objects annotated as one) and detections of single objects inside it.
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 5,
                            "bbox": [90.0, 60.0, 60.0, 50.0], "area": 2500.0, "iscrowd": 1})
        for d in range(3):
            results.append({"image_id": image_id, "category_id": 5, "score": float(rng.uniform(0.5, 0.95)),
                            "bbox": [92.0 + 18 * d, 62.0, 16.0, 20.0]})
        results.append({"image_id": image_id, "category_id": 3, "score": 0.4, "bbox": [5.0, 5.0, 20.0, 20.0]})
    gt_path = root / "gt.json"
    gt_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    results_path = root / "results.json"
    results_path.write_text(json.dumps(results))
    return gt_path, results_path, categories


def test_crowd_regions_and_areas_give_pycocotools_own_numbers(tmp_path) -> None:
    import contextlib
    import io
    import json

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from diffdet.data import load_coco

    gt_path, results_path, categories = write_crowd_dataset(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(str(results_path)), "bbox")
        evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    direct = [100 * v if v >= 0 else None for v in evaluator.stats[:6]]

    split = load_coco(gt_path, tmp_path / "img", class_names=CLASSES)
    label_of = {c["id"]: CLASSES.index(c["name"]) for c in categories}
    detections = {}
    for r in json.loads(results_path.read_text()):
        x, y, w, h = r["bbox"]
        det = detections.setdefault(r["image_id"], {"image_id": r["image_id"], "boxes_xyxy": [], "scores": [],
                                                    "labels": []})
        det["boxes_xyxy"].append([x, y, x + w, y + h])
        det["scores"].append(r["score"])
        det["labels"].append(label_of[r["category_id"]])
    ours = coco_evaluate(list(detections.values()), split.samples, CLASSES)
    for key, value in zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), direct):
        assert ours[key] == (None if value is None else pytest.approx(value, abs=1e-9)), key
    # Without the crowd regions the detections on them would be false positives: a lower AP.
    for s in split.samples:
        s.crowd_boxes_xyxy, s.crowd_labels, s.crowd_areas = np.zeros((0, 4)), np.zeros(0, np.int64), None
    assert coco_evaluate(list(detections.values()), split.samples, CLASSES)["AP"] < ours["AP"] - 1.0


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "examples"
CHECKPOINT = EXAMPLES.parent / "checkpoints" / "diffdet_tiny_props.safetensors"


def test_example_scenes_score_the_same_in_props_and_alphabetical_coco_form(tmp_path, capsys) -> None:
    """The issue's finding: a COCO file of the example scenes listing the ten classes alphabetically (ids 1-10)
    must give the AP of the PROPS file; predict --coco-gt results scored by pycocotools itself agree."""
    import contextlib
    import io
    import json
    import shutil

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from diffdet.__main__ import main
    from diffdet.config import PROPS_CLASSES

    entries = json.loads((EXAMPLES / "props.json").read_text())[:3]
    folder = tmp_path / "PROPS-Detection-Dataset"
    folder.mkdir()
    for rel, _ in entries:
        shutil.copy(EXAMPLES / rel, folder / rel)
    (folder / "val.json").write_text(json.dumps(entries))
    cat_of = {name: i + 1 for i, name in enumerate(sorted(PROPS_CLASSES))}
    coco = {"images": [{"id": 50 - k, "file_name": rel, "height": 480, "width": 640}
                       for k, (rel, _) in enumerate(entries)],
            "categories": [{"id": i, "name": n} for n, i in cat_of.items()], "annotations": []}
    for k, (_, objects) in enumerate(entries):
        for obj in objects:
            x1, y1, x2, y2 = obj["xyxy"]
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": 50 - k,
                                        "category_id": cat_of[obj["name"]], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                        "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    gt_path = tmp_path / "alphabetical.json"
    gt_path.write_text(json.dumps(coco))

    common = ["--checkpoint", str(CHECKPOINT), "--steps", "1", "--seed", "0", "--batch-size", "1"]
    aps = {}
    for fmt, data in (("props", str(folder)), ("coco", f"{gt_path}:{folder}")):
        assert main(["eval", *common, "--data", data, "--data-format", fmt, "--out", str(tmp_path / f"{fmt}.json")]) == 0
        aps[fmt] = json.loads((tmp_path / f"{fmt}.json").read_text())
    assert aps["props"]["AP"] > 30  # a trained model: a wrong class mapping would score near 0
    assert aps["coco"]["AP"] == aps["props"]["AP"] and aps["coco"]["per_class"] == aps["props"]["per_class"]

    out = tmp_path / "predict"
    assert main(["predict", *common, "--images", *[str(folder / rel) for rel, _ in entries], "--score-threshold", "0",
                 "--trajectory", "none", "--coco-gt", str(gt_path), "--out", str(out)]) == 0
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(str(out / "detections.json")), "bbox")
        evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    # The results file rounds boxes to 0.01 px and scores to 1e-5: the same AP up to that rounding.
    assert 100 * evaluator.stats[0] == pytest.approx(aps["props"]["AP"], abs=0.2)


def test_operating_point_counts_what_a_user_sees_at_a_score_threshold():
    from diffdet.evaluate import operating_point

    gt = [{"image_id": 0, "size_hw": (100, 100), "boxes_xyxy": np.array([[0, 0, 40, 40], [50, 50, 90, 90.0]]),
           "labels": np.array([0, 1])},
          {"image_id": 1, "size_hw": (100, 100), "boxes_xyxy": np.array([[10, 10, 30, 30.0]]), "labels": np.array([2])}]
    dets = [{"image_id": 0, "boxes_xyxy": np.array([[1, 1, 40, 40], [50, 50, 90, 90], [60, 0, 99, 30.0]]),
             "scores": np.array([0.9, 0.8, 0.6]), "labels": np.array([0, 0, 1])},   # TP, wrong class, background
            {"image_id": 1, "boxes_xyxy": np.array([[10, 10, 30, 30.0]]), "scores": np.array([0.2]),
             "labels": np.array([2])}]                                              # right, but below the threshold
    point = operating_point(dets, gt, score_threshold=0.3)
    assert point["detections"] == 3 and point["objects"] == 3
    assert point["recall"] == pytest.approx(100 / 3, abs=0.01) and point["recall_any_class"] == pytest.approx(200 / 3, abs=0.01)
    assert point["precision"] == pytest.approx(100 / 3, abs=0.01)
    assert point["confusions"] == 1 and point["background"] == 1
    assert point["per_class_recall"] == {0: 100.0, 1: 0.0, 2: 0.0}
    assert operating_point(dets, gt, score_threshold=0.1)["recall"] == pytest.approx(200 / 3, abs=0.01)


def test_detections_on_crowd_regions_are_ignored_not_false_positives():
    from diffdet.evaluate import match_detections, operating_point

    boxes = np.array([[0, 0, 40, 40], [60, 60, 70, 70], [60, 60, 70, 70.0]])
    scores, labels = np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0])
    gt_boxes, gt_labels = np.array([[0, 0, 40, 40.0]]), np.array([0])
    crowd_boxes, crowd_labels = np.array([[50, 50, 100, 100.0]]), np.array([1])  # a crowd of class 1
    plain = match_detections(boxes, scores, labels, gt_boxes, gt_labels)
    assert list(plain.status) == ["TP", "FP", "FP"]
    crowd = match_detections(boxes, scores, labels, gt_boxes, gt_labels, crowd_boxes_xyxy=crowd_boxes,
                             crowd_labels=crowd_labels)
    # inside the class-1 crowd: the class-1 box is ignored; the class-0 box in the same place stays a false positive
    assert list(crowd.status) == ["TP", "ignored", "FP"] and crowd.fp == 1 and crowd.ignored == 1
    gt = [{"image_id": 0, "size_hw": (100, 100), "boxes_xyxy": gt_boxes, "labels": gt_labels,
           "crowd_boxes_xyxy": crowd_boxes, "crowd_labels": crowd_labels}]
    point = operating_point([{"image_id": 0, "boxes_xyxy": boxes, "scores": scores, "labels": labels}], gt)
    assert point["detections"] == 2 and point["precision"] == 50.0 and point["background"] == 1
