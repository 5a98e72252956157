import copy
import json

import numpy as np
import pytest
import torch

from diffdet.heatmap import synthesize_heatmap
from diffdet.inference import Detector, HeatmapGuide, SamplerOptions, native_bfloat16, sample
from diffdet.model import DiffusionDet
from diffdet.trajectory import Trajectory
from diffdet.weights import save_checkpoint


class OracleModel(DiffusionDet):
    """Predicts the ground truth (cycled over the proposals) with confident logits: isolates the sampler."""

    def __init__(self, cfg, gt_xyxy_model_pixels, gt_labels):
        super().__init__(cfg)
        self.gt, self.gt_labels = gt_xyxy_model_pixels, gt_labels

    def forward(self, features, boxes_xyxy, t, pool=None):
        batch, num = boxes_xyxy.shape[:2]
        idx = torch.arange(num) % self.gt.shape[0]
        boxes = self.gt[idx].expand(batch, num, 4)
        logits = torch.full((batch, num, self.cfg.num_classes), -10.0)
        logits[:, torch.arange(num), self.gt_labels[idx]] = 10.0
        L = self.cfg.num_stages
        return {"pred_logits": logits.expand(L, -1, -1, -1), "pred_boxes": boxes.expand(L, -1, -1, -1)}


@pytest.mark.parametrize("steps", [1, 4])
def test_sampling_with_an_oracle_recovers_ground_truth(tiny_cfg, rgb_image, steps):
    gt = torch.tensor([[5.0, 6.0, 30.0, 40.0], [40.0, 10.0, 70.0, 45.0]])  # pixels of the 48x72 image
    labels = torch.tensor([2, 7])
    scale = 64 / 48  # the tiny test config resizes 48x72 to 64x96
    model = OracleModel(tiny_cfg, gt * scale, labels).eval()
    (traj,) = sample(model, [rgb_image], SamplerOptions(steps=steps, eta=0.0), seed=0)
    det = traj.detections
    order = np.argsort(det.labels)
    assert det.labels[order].tolist() == [2, 7]
    np.testing.assert_allclose(det.boxes_xyxy[order], gt.numpy(), atol=1e-3)
    assert np.all(det.scores > 0.99)
    # Every stage at every step predicted the ground truth; the noisy inputs approach it step by step.
    np.testing.assert_allclose(traj.boxes_xyxy[:, :, 0], np.broadcast_to(gt[0].numpy(), traj.boxes_xyxy[:, :, 0].shape), atol=1e-3)
    if steps > 1:
        err = np.abs(traj.boxes_in_xyxy[:, ::2] - gt[0].numpy()).mean(axis=(1, 2))
        assert err[-1] < err[0]


def test_trajectory_shapes_and_contents(tiny_cfg, tiny_model, rgb_image):
    (traj,) = sample(tiny_model, [rgb_image], SamplerOptions(steps=3, renewal_threshold=0.5), seed=0)
    S, L, N, K = 3, tiny_cfg.num_stages, tiny_cfg.num_proposals, tiny_cfg.num_classes
    assert traj.times == [(999, 665), (665, 332), (332, -1)]
    assert traj.boxes_xyxy.shape == (S, L, N, 4) and traj.scores.shape == (S, L, N) and traj.labels.shape == (S, L, N)
    assert traj.boxes_in_xyxy.shape == (S, N, 4) and traj.renewed.shape == (S, N)
    assert traj.heatmap.shape[0] == K and traj.heatmap.min() >= 0 and traj.heatmap.max() <= 1
    # Untrained: every score is below 0.5, so every slot is renewed after every step but the last.
    assert traj.renewed[:-1].all() and not traj.renewed[-1].any()
    assert traj.image_size_hw == (48, 72)
    det = traj.detections
    assert len(det) <= 100 and np.all(det.boxes_xyxy[:, 2] <= 72) and np.all(det.boxes_xyxy[:, 3] <= 48)
    assert set(det.step.tolist()) <= {0, 1, 2}


def test_same_seed_same_trajectory_different_seed_different(tiny_model, rgb_image):
    opts = SamplerOptions(steps=2)
    a, b, c = (sample(tiny_model, [rgb_image], opts, seed=s)[0] for s in (7, 7, 8))
    assert np.array_equal(a.boxes_xyxy, b.boxes_xyxy) and np.array_equal(a.detections.scores, b.detections.scores)
    assert a.settings["seed"] == 7 and c.settings["seed"] == 8
    assert not np.allclose(a.boxes_in_xyxy, c.boxes_in_xyxy)


def test_batched_equals_one_by_one(tiny_model):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (48, 72, 3), dtype=np.uint8) for _ in range(3)]
    opts = SamplerOptions(steps=2)
    batched = sample(tiny_model, images, opts, seed=[1, 2, 3])
    for image, s, traj in zip(images, [1, 2, 3], batched):
        (single,) = sample(tiny_model, [image], opts, seed=s)
        # Batched GEMMs round differently from single ones; a hundredth of a pixel is the float noise floor here.
        np.testing.assert_allclose(traj.boxes_xyxy, single.boxes_xyxy, rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(traj.detections.scores, single.detections.scores, rtol=1e-4, atol=1e-5)


def test_mixed_sizes_in_one_batch(tiny_model):
    images = [np.zeros((48, 72, 3), np.uint8), np.zeros((100, 50, 3), np.uint8)]
    trajs = sample(tiny_model, images, SamplerOptions(steps=1), seed=0)
    assert [t.image_size_hw for t in trajs] == [(48, 72), (100, 50)]
    assert np.all(trajs[1].detections.boxes_xyxy[:, 2] <= 50)


def test_heatmap_guided_proposals_are_recorded(tiny_model, rgb_image):
    # An untrained head predicts the 0.01 prior everywhere: no peaks, so no proposal comes from the heatmap.
    (none,) = sample(tiny_model, [rgb_image], SamplerOptions(steps=2, heatmap_init=0.5), seed=0)
    assert not none.from_heatmap.any() and none.settings["heatmap_peaks"] == 0
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        model.heatmap_head.layer[2].bias.fill_(3.0)  # confident everywhere: plenty of peaks
    (traj,) = sample(model, [rgb_image], SamplerOptions(steps=2, heatmap_init=0.5), seed=0)
    n = traj.from_heatmap.shape[1]
    assert traj.settings["heatmap_peaks"] > 0
    # Half the slots are asked for; each peak fills at most MAX_PER_PEAK of them, the rest stay noise.
    expected = min(n // 2, HeatmapGuide.MAX_PER_PEAK * traj.settings["heatmap_peaks"])
    assert traj.from_heatmap[0].sum() == expected == traj.settings["num_from_heatmap"] > 0
    # Heatmap slots start with centres at peaks: inside the image, unlike pure noise which often is not.
    centres = (traj.boxes_in_xyxy[0, :expected, :2] + traj.boxes_in_xyxy[0, :expected, 2:]) / 2
    assert np.all((centres >= -3) & (centres <= np.array([72 + 3, 48 + 3])))
    (plain,) = sample(model, [rgb_image], SamplerOptions(steps=2), seed=0)
    assert not plain.from_heatmap.any()


def test_options_are_validated(tiny_model, rgb_image):
    for bad in (dict(steps=0), dict(eta=2.0), dict(heatmap_init=1.5), dict(score_threshold=-1), dict(num_proposals=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            sample(tiny_model, [rgb_image], SamplerOptions(**bad))
    with pytest.raises(ValueError, match="seeds"):
        sample(tiny_model, [rgb_image], seed=[1, 2])
    with pytest.raises(ValueError, match="RGB"):
        sample(tiny_model, [np.zeros((10, 10), np.uint8)])


def test_recording_off_keeps_detections(tiny_model, rgb_image):
    (rec,) = sample(tiny_model, [rgb_image], SamplerOptions(steps=2), seed=3)
    (plain,) = sample(tiny_model, [rgb_image], SamplerOptions(steps=2, record=False), seed=3)
    assert plain.boxes_xyxy is None and not plain.recorded
    np.testing.assert_array_equal(rec.detections.boxes_xyxy, plain.detections.boxes_xyxy)


def test_trajectory_serialisation_round_trip(tmp_path, tiny_model, rgb_image):
    (traj,) = sample(tiny_model, [rgb_image], SamplerOptions(steps=2), seed=0)
    traj.save_npz(tmp_path / "t.npz")
    back = Trajectory.load_npz(tmp_path / "t.npz")
    assert back.times == traj.times and back.class_names == traj.class_names
    np.testing.assert_array_equal(back.boxes_xyxy, traj.boxes_xyxy)
    np.testing.assert_array_equal(back.renewed, traj.renewed)
    data = json.loads(traj.to_json())
    assert len(data["boxes_xyxy"]) == 2 and data["detections"]["labels"] == traj.detections.labels.tolist()


def test_detector_and_predict_cli(tmp_path, tiny_model, rgb_image):
    import cv2

    from diffdet.__main__ import main

    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model, ckpt)
    det = Detector.from_checkpoint(ckpt, device="cpu")
    assert det.predict([rgb_image], SamplerOptions(steps=1))[0].image_size_hw == (48, 72)
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), rgb_image[:, :, ::-1])
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(ckpt), "--images", str(tmp_path / "a.png"), str(tmp_path / "b.jpg"),
                 "--steps", "2", "--proposals", "8", "--score-threshold", "0", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "detections.json").read_text())
    assert {r["image_id"] for r in results} == {0, 1} and all(len(r["bbox"]) == 4 for r in results)
    trajs = sorted((out / "trajectories").glob("*.npz"))
    assert len(trajs) == 2 and Trajectory.load_npz(trajs[0]).boxes_xyxy.shape[2] == 8
    images = json.loads((out / "images.json").read_text())
    assert images["categories"][0] == {"id": 1, "name": tiny_model.cfg.class_names[0]}  # documented 1-based ids
    assert {r["category_id"] for r in results} <= set(range(1, tiny_model.cfg.num_classes + 1))


def test_nms_runs_on_unclipped_boxes_before_clipping():
    """A box hanging 100 px over the left border and one inside: IoU 1/3 unclipped, 1.0 once clipped."""
    from torchvision.ops import batched_nms, clip_boxes_to_image

    from diffdet.inference import postprocess_detections

    boxes = torch.tensor([[-100.0, 10.0, 50.0, 60.0], [0.0, 10.0, 50.0, 60.0]])
    scores, labels = torch.tensor([0.9, 0.8]), torch.tensor([3, 3])
    # The case discriminates: clipping first would make the boxes identical and suppress the second.
    assert batched_nms(clip_boxes_to_image(boxes, (100, 100)), scores, labels, 0.5).tolist() == [0]
    keep, final = postprocess_detections(boxes, scores, labels, torch.ones(4), (100, 100), SamplerOptions())
    assert keep.tolist() == [0, 1]
    assert final.tolist() == [[0.0, 10.0, 50.0, 60.0], [0.0, 10.0, 50.0, 60.0]]
    # Rescaling to the original image comes after NMS; boxes left empty by clipping are dropped.
    outside = torch.cat([boxes, torch.tensor([[120.0, 10.0, 150.0, 60.0]])])
    keep, final = postprocess_detections(outside, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([3, 3, 3]),
                                         torch.tensor([2.0, 2.0, 2.0, 2.0]), (200, 200), SamplerOptions())
    assert keep.tolist() == [0, 1] and final.tolist() == [[0.0, 20.0, 100.0, 120.0], [0.0, 20.0, 100.0, 120.0]]


def test_sampler_keeps_both_boxes_that_only_clipping_would_merge(tiny_cfg, rgb_image):
    # Model pixels (the 48x72 image is resized to 64x96): one box far over the left border, one inside, same class.
    gt = torch.tensor([[-130.0, 10.0, 60.0, 50.0], [0.0, 10.0, 60.0, 50.0]])
    model = OracleModel(tiny_cfg, gt, torch.tensor([4, 4])).eval()
    (traj,) = sample(model, [rgb_image], SamplerOptions(steps=1), seed=0)
    det = traj.detections
    assert len(det) == 2 and det.labels.tolist() == [4, 4]
    np.testing.assert_allclose(det.boxes_xyxy, [[0.0, 7.5, 45.0, 37.5]] * 2, atol=1e-4)


def test_agnostic_nms_lets_classes_compete():
    from diffdet.inference import postprocess_detections

    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0], [12.0, 10.0, 52.0, 50.0]])  # IoU 0.9
    scores, labels = torch.tensor([0.6, 0.9]), torch.tensor([1, 2])
    keep, _ = postprocess_detections(boxes, scores, labels, torch.ones(4), (100, 100), SamplerOptions())
    assert keep.tolist() == [1, 0]
    keep, _ = postprocess_detections(boxes, scores, labels, torch.ones(4), (100, 100), SamplerOptions(agnostic_nms=True))
    assert keep.tolist() == [1]


def test_ensemble_last_step_option(tiny_cfg, rgb_image):
    """Default: every step's candidates are pooled; ensemble_last_step=False drops the last step, as the reference."""
    model = OracleModel(tiny_cfg, torch.tensor([[5.0, 6.0, 30.0, 40.0]]), torch.tensor([2])).eval()

    def candidate_steps(steps, **kwargs):
        options = SamplerOptions(steps=steps, nms=False, max_detections=10_000, record=False, **kwargs)
        (traj,) = sample(model, [rgb_image], options, seed=0)
        return sorted(set(traj.detections.step.tolist())), len(traj.detections)

    assert candidate_steps(3) == ([0, 1, 2], 3 * 16)
    assert candidate_steps(3, ensemble_last_step=False) == ([0, 1], 2 * 16)
    # One step, or no ensemble: only the last step's candidates, whatever ensemble_last_step says.
    assert candidate_steps(1, ensemble_last_step=False) == ([0], 16)
    assert candidate_steps(3, ensemble=False, ensemble_last_step=False) == ([2], 16)


def test_sampler_flags_on_the_command_line(tmp_path, tiny_model, rgb_image):
    import cv2

    from diffdet.__main__ import main

    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model, ckpt)
    cv2.imwrite(str(tmp_path / "a.png"), rgb_image[:, :, ::-1])
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(ckpt), "--images", str(tmp_path / "a.png"), "--steps", "2",
                 "--agnostic-nms", "--no-ensemble-last-step", "--trajectory", "json", "--out", str(out)]) == 0
    (path,) = (out / "trajectories").glob("*.json")
    settings = json.loads(path.read_text())["settings"]
    assert settings["agnostic_nms"] is True and settings["ensemble_last_step"] is False


def test_predict_skips_bad_files_names_them_and_writes_the_rest(tmp_path, tiny_model, rgb_image, capsys):
    import cv2

    from diffdet.__main__ import main

    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model, ckpt)
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), rgb_image[:, :, ::-1])
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:300])
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(ckpt), "--steps", "1", "--proposals", "8", "--score-threshold", "0",
            "--trajectory", "none", "--out", str(out), "--images", str(good), str(good), str(truncated), str(text),
            str(good)]
    assert main(args) == 1  # some images failed
    err = capsys.readouterr().err
    assert f"skipped {truncated}: " in err and "corrupt or truncated" in err
    assert f"skipped {text}: " in err and "not an image" in err and "BytesIO" not in err
    results = json.loads((out / "detections.json").read_text())
    info = json.loads((out / "images.json").read_text())
    assert [im["id"] for im in info["images"]] == [0, 1, 4]  # the fifth file ran after the bad ones
    assert {r["image_id"] for r in results} <= {0, 1, 4}
    assert [f["file_name"] for f in info["failed"]] == [str(truncated), str(text)]
    # --fail-fast stops at the first bad file; what was read before it is still written.
    assert main(args + ["--fail-fast"]) == 1
    assert [im["id"] for im in json.loads((out / "images.json").read_text())["images"]] == [0, 1]


@pytest.mark.parametrize("flag, value", [("--steps", "0"), ("--proposals", "-3"), ("--eta", "1.5"),
                                         ("--heatmap-init", "nan"), ("--score-threshold", "2"),
                                         ("--batch-size", "0"), ("--seed", "-1"), ("--steps", "two")])
def test_predict_numeric_arguments_are_range_checked(tmp_path, flag, value, capsys):
    from diffdet.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["predict", "--images", "x.jpg", "--out", str(tmp_path), flag, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and f"argument {flag}" in err, err


def test_results_carry_the_ids_of_the_users_coco_ground_truth(tmp_path, tiny_model, rgb_image):
    import cv2

    from diffdet.__main__ import main

    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model, ckpt)
    names = tiny_model.cfg.class_names
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), rgb_image[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "img" / "b.png"), rgb_image[::-1, :, ::-1])
    # Ids and order unlike the model's: categories sorted by name, ids from 101; images with ids 40 and 17.
    categories = [{"id": 101 + i, "name": n} for i, n in enumerate(sorted(names))]
    cat_of = {c["name"]: c["id"] for c in categories}
    gt = {"images": [{"id": 40, "file_name": "a.png", "height": 48, "width": 72},
                     {"id": 17, "file_name": "b.png", "height": 48, "width": 72}],
          "categories": categories,
          "annotations": [{"id": 1, "image_id": 40, "category_id": cat_of[names[0]], "bbox": [5, 5, 30, 20],
                           "area": 600, "iscrowd": 0},
                          {"id": 2, "image_id": 17, "category_id": cat_of[names[3]], "bbox": [30, 10, 20, 30],
                           "area": 600, "iscrowd": 0}]}
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(ckpt), "--images", str(tmp_path / "img" / "a.png"),
                 str(tmp_path / "img" / "b.png"), "--steps", "1", "--proposals", "16", "--score-threshold", "0",
                 "--trajectory", "none", "--coco-gt", str(gt_path), "--out", str(out)])
    assert code == 0
    info = json.loads((out / "images.json").read_text())
    assert [im["id"] for im in info["images"]] == [40, 17] and info["categories"] == categories
    results = json.loads((out / "detections.json").read_text())
    assert {r["image_id"] for r in results} <= {40, 17}
    assert {r["category_id"] for r in results} <= set(cat_of.values())
    # The scoring against pycocotools run on the files themselves is in test_evaluate (a trained model).
    # An image the ground truth does not list is named and skipped.
    cv2.imwrite(str(tmp_path / "img" / "c.png"), rgb_image[:, :, ::-1])
    code = main(["predict", "--checkpoint", str(ckpt), "--images", str(tmp_path / "img" / "c.png"), "--steps", "1",
                 "--trajectory", "none", "--coco-gt", str(gt_path), "--out", str(out)])
    assert code == 1


def test_extreme_aspect_images_run_on_the_cli_as_in_the_app(tmp_path, tiny_model):
    """A 4000x60 strip and a 1x1 image: the model resizes and pads them, so both entry points accept them."""
    from PIL import Image

    from app.inputs import load_image
    from diffdet.__main__ import main

    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model, ckpt)
    rng = np.random.default_rng(0)
    strip, dot = tmp_path / "strip.png", tmp_path / "dot.png"
    Image.fromarray(rng.integers(0, 256, (60, 4000, 3), dtype=np.uint8)).save(strip)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(dot)
    assert load_image(strip).shape == (60, 4000, 3) and load_image(dot).shape == (1, 1, 3)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(ckpt), "--images", str(strip), str(dot), "--steps", "1",
                 "--score-threshold", "0", "--trajectory", "none", "--out", str(out)]) == 0
    info = json.loads((out / "images.json").read_text())
    assert [(im["height"], im["width"]) for im in info["images"]] == [(60, 4000), (1, 1)]
    for r in json.loads((out / "detections.json").read_text()):
        x, y, w, h = r["bbox"]
        size = info["images"][r["image_id"]]
        assert 0 <= x and x + w <= size["width"] + 0.01 and 0 <= y and y + h <= size["height"] + 0.01


def test_heatmap_guide_puts_boxes_on_the_blobs():
    # On target heatmaps (what a perfect head predicts) the guide finds one peak per object and sizes its boxes
    # from the blob: the target's sigma is rho * min(w, h) / stride, so the base size reads back min(w, h).
    boxes = torch.tensor([[8.0, 8.0, 88.0, 48.0], [120.0, 100.0, 184.0, 228.0]])  # short sides 40, 64 px
    heat = synthesize_heatmap(boxes, torch.tensor([0, 1]), 2, (64, 64), 4.0, min_radius=1.0, rho=0.5)
    guide = HeatmapGuide.from_heatmap(heat, 4.0, 0.5, torch.tensor([256.0, 256.0]))
    assert len(guide) == 2
    assert torch.allclose(guide.centres_xy, torch.tensor([[50.0, 30.0], [154.0, 166.0]]), atol=4.0)
    assert torch.allclose(guide.sizes_wh, torch.tensor([[40.0, 40.0], [64.0, 64.0]]), rtol=0.1)
    # Slots cycle over the peaks; all inside the image and of positive size.
    drawn = guide.boxes(14, torch.Generator().manual_seed(0))  # (14, 4) cxcywh in [0, 1]
    assert drawn.shape == (14, 4) and bool(((drawn >= 0) & (drawn <= 1)).all()) and bool((drawn[:, 2:] > 0).all())
    centres = drawn[:, :2] * 256
    assert torch.allclose(centres[0::2], guide.centres_xy[0].expand(7, 2), atol=20)
    assert torch.allclose(centres[1::2], guide.centres_xy[1].expand(7, 2), atol=20)
    assert guide.slots(10) == 2 * guide.MAX_PER_PEAK and guide.slots(1) == 1  # the rest stay noise
    # Several local maxima on one blob (a bumpy plateau) give one peak.
    bumpy = heat.clone()
    bumpy[0, 6, 14] = bumpy[0, 7, 12] + 1e-3
    assert len(HeatmapGuide.from_heatmap(bumpy, 4.0, 0.5, torch.tensor([256.0, 256.0]))) == 2


def test_reusing_the_pooler_changes_nothing(tiny_model, rgb_image):
    batch, _ = tiny_model.preprocess([torch.from_numpy(rgb_image).permute(2, 0, 1).float()])
    with torch.inference_mode():
        features = tiny_model.features(batch)
        boxes = torch.tensor([[[2.0, 3.0, 40.0, 30.0], [10.0, 5.0, 60.0, 44.0]]])
        t = torch.tensor([500])
        fresh = tiny_model(features, boxes, t)
        reused = tiny_model(features, boxes, t, pool=tiny_model.head.pooler(features))
    assert torch.equal(fresh["pred_boxes"], reused["pred_boxes"])
    assert torch.equal(fresh["pred_logits"], reused["pred_logits"])


def test_dtype_option(tiny_model, rgb_image):
    with pytest.raises(ValueError, match="dtype must be one of"):
        SamplerOptions(dtype="int8").validate(tiny_model.cfg)
    with pytest.raises(ValueError, match="float16 needs a CUDA device"):
        sample(tiny_model, [rgb_image], SamplerOptions(steps=1, dtype="float16"), seed=0)
    (full,) = sample(tiny_model, [rgb_image], SamplerOptions(steps=1, num_proposals=20), seed=0)
    (auto,) = sample(tiny_model, [rgb_image], SamplerOptions(steps=1, num_proposals=20, dtype="auto"), seed=0)
    assert auto.settings["dtype"] == "auto"
    if not native_bfloat16(torch.device("cpu")):  # auto is float32 here: the same numbers
        np.testing.assert_array_equal(auto.boxes_xyxy, full.boxes_xyxy)
        with pytest.warns(RuntimeWarning, match="emulated"):
            (half,) = sample(tiny_model, [rgb_image], SamplerOptions(steps=1, num_proposals=20, dtype="bfloat16"))
    else:
        (half,) = sample(tiny_model, [rgb_image], SamplerOptions(steps=1, num_proposals=20, dtype="bfloat16"))
    # bfloat16 keeps about 3 significant digits: the first head stage's boxes within a few pixels, not
    # bit-identical (later stages of an untrained head amplify the differences).
    assert half.boxes_xyxy.dtype == np.float32
    assert not np.array_equal(half.boxes_xyxy, full.boxes_xyxy)
    np.testing.assert_allclose(half.boxes_xyxy[:, 0], full.boxes_xyxy[:, 0], atol=4.0)
    detector = Detector(tiny_model, device="cpu", dtype="auto")
    assert detector.predict([rgb_image], SamplerOptions(steps=1))[0].settings["dtype"] == "auto"
    with pytest.raises(ValueError, match="dtype must be one of"):
        Detector(tiny_model, device="cpu", dtype="fp8")
