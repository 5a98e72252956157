"""app.evaluation: the app's AP is pycocotools' on the same inputs (crowd regions included); its COCO download."""
from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import test_app_support as support
from app.evaluation import coco_json, image_ap
from app.inputs import InputError, log_user_error, parse_annotations

CLASSES = support.CLASSES


def pycocotools_ap(gt_path: Path, results: list[dict]) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    return 100 * evaluator.stats[0]


def test_crowd_regions_are_ignore_regions_as_in_pycocotools(tmp_path: Path) -> None:
    traj = support.make_trajectory(steps=2, proposals=24)
    det = traj.detections
    # Ground truth: the first target as an ordinary box, the second as a crowd region over the detections of its
    # class; category ids and order unlike the model's, matched by name.
    categories = [{"id": 12, "name": "mug"}, {"id": 4, "name": "master_chef_can"}]
    gt = {"images": [{"id": 5, "file_name": "scene.png", "height": 96, "width": 128}],
          "categories": categories,
          "annotations": [{"id": 1, "image_id": 5, "category_id": 4, "bbox": [20, 16, 40, 40], "area": 1600,
                           "iscrowd": 0},
                          {"id": 2, "image_id": 5, "category_id": 12, "bbox": [66, 26, 56, 64], "area": 3584,
                           "iscrowd": 1}]}
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    parsed = parse_annotations(gt_path, CLASSES, image_name="scene.png", image_size_hw=traj.image_size_hw)
    assert len(parsed) == 1 and parsed.crowd_boxes_xyxy.tolist() == [[66, 26, 122, 90]]
    assert parsed.crowd_labels.tolist() == [CLASSES.index("mug")]
    ours = image_ap(traj, parsed.boxes_xyxy, parsed.labels, parsed.crowd_boxes_xyxy, parsed.crowd_labels)
    id_of = {c["name"]: c["id"] for c in categories}
    results = [{"image_id": 5, "category_id": id_of[CLASSES[int(c)]], "score": float(s),
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
               for b, s, c in zip(det.boxes_xyxy, det.scores, det.labels) if CLASSES[int(c)] in id_of]
    assert (det.labels == CLASSES.index("mug")).any()  # detections on the crowd region exist
    assert ours["AP"] == pytest.approx(pycocotools_ap(gt_path, results), abs=1e-9)
    counted = image_ap(traj, np.concatenate([parsed.boxes_xyxy, parsed.crowd_boxes_xyxy]),
                       np.concatenate([parsed.labels, parsed.crowd_labels]))
    assert counted["AP"] != pytest.approx(ours["AP"])  # the old behaviour (crowd as ordinary boxes) differs


def test_coco_download_has_documented_ids_and_scores_against_its_categories(tmp_path: Path) -> None:
    traj = support.make_trajectory()
    data = json.loads(coco_json(traj, "scene.png"))
    assert data["categories"] == [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]  # 1-based
    assert {a["category_id"] for a in data["annotations"]} <= {1, 2, 3}
    # The ground truth of the same scene written with those categories: perfect detections score 100.
    perfect = {"images": data["images"], "categories": data["categories"],
               "annotations": [{"id": a["id"], "image_id": 0, "category_id": a["category_id"], "bbox": a["bbox"],
                                "area": a["bbox"][2] * a["bbox"][3], "iscrowd": 0} for a in data["annotations"]]}
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(perfect))
    results = [{k: a[k] for k in ("image_id", "category_id", "bbox", "score")} for a in data["annotations"]]
    assert pycocotools_ap(gt_path, results) == pytest.approx(100.0)


def test_user_errors_are_logged_as_one_line(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("diffdet.app.test")
    with caplog.at_level(logging.INFO, logger="diffdet.app.test"):
        log_user_error(logger, "detect", InputError("The image is corrupt or truncated:\n its pixels could not be "
                                                    "decoded."))
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.levelno == logging.WARNING and record.exc_info is None and "\n" not in record.getMessage()
    assert record.getMessage().startswith("user error in detect: The image is corrupt")


def test_guarded_handlers_log_user_errors_in_one_line_and_faults_with_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    import gradio as gr

    from app.controls import guard as _guard

    def refuse() -> None:
        raise InputError("The image is corrupt or truncated.")

    def crash() -> None:
        raise KeyError("bug")

    with caplog.at_level(logging.INFO, logger="diffdet.app"):
        with pytest.raises(gr.Error) as user:
            _guard(refuse)()
        with pytest.raises(gr.Error) as fault:
            _guard(crash)()
    assert not user.value.print_exception and not fault.value.print_exception  # Gradio prints no traceback
    user_record, fault_record = [r for r in caplog.records if r.name == "diffdet.app"]
    assert user_record.exc_info is None and user_record.getMessage() == \
        "user error in refuse: The image is corrupt or truncated."
    assert fault_record.exc_info is not None  # real faults keep their traceback in the server log
