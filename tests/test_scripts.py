"""The project's scripts keep their logic in functions; the parts that transform data are tested here."""
import importlib.util
from pathlib import Path

import numpy as np


def load_script(name):
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_photo_shift_zoom_moves_boxes_with_the_pixels():
    shift = load_script("photo_shift").zoom(2.0)
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255  # a bright square at the centre
    boxes = np.array([[90.0, 40.0, 110.0, 60.0], [0.0, 0.0, 30.0, 20.0]])  # centre; a corner box cropped away
    zoomed, moved = shift(image, boxes, np.random.default_rng(0))
    assert zoomed.shape == image.shape
    np.testing.assert_allclose(moved[0], [80.0, 30.0, 120.0, 70.0])  # twice as large around the centre
    ys, xs = np.nonzero(zoomed[:, :, 0] > 127)
    assert abs(xs.min() - 80) <= 1 and abs(xs.max() - 119) <= 1 and abs(ys.min() - 30) <= 1
    assert moved[1, 2] - moved[1, 0] == 0  # outside the crop: zero width, dropped by the caller


def test_photo_shift_pixel_shifts_keep_shape_and_type():
    shifts = load_script("photo_shift").SHIFTS
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    boxes = np.array([[1.0, 2.0, 30.0, 40.0]])
    for name, shift in shifts.items():
        if shift is None:
            continue
        out, out_boxes = shift(image, boxes, np.random.default_rng(0))
        assert out.shape == image.shape and out.dtype == np.uint8, name
        assert not np.array_equal(out, image), name  # every shift changes the pixels


def _fake_run(folder, aps, per_class_ap, heatmap=None):
    """A run folder as training writes it; ``heatmap`` = (weight, unweighted loss_heatmap) for a heatmap arm."""
    import json

    folder.mkdir(parents=True)
    rows = []
    for it in range(16, 129, 16):
        rows.append({"iter": it, "loss_total": 1.0, "it_s": 0.5})
        if heatmap:
            rows[-1]["loss_heatmap"] = heatmap[1] * (2 if it <= 64 else 1)  # only iterations > 64 count
            (folder / "config.json").write_text(json.dumps({"heatmap_weight": heatmap[0]}))
        if it % 64 == 0:
            ap = aps[it // 64 - 1]
            rows.append({"iter": it, "eval": {"AP": ap, "AP50": ap + 20, "per_class": {"mug": per_class_ap}}})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_convergence_report_tables_keep_the_prose(tmp_path, monkeypatch):
    study = load_script("convergence_study")
    out, docs = tmp_path / "study", tmp_path / "docs"
    for seed, (base, heat) in enumerate([((10, 30), (14, 31)), ((12, 32), (15, 36)), ((11, 34), (16, 35))]):
        _fake_run(out / f"baseline_seed{seed}", base, 40.0 + seed)
        _fake_run(out / f"heatmap_seed{seed}", heat, 50.0 + seed, heatmap=(1.5, 0.002))
    _fake_run(out / "focal_seed0", (13, 33), 45.0, heatmap=(1.5, 0.1))
    _fake_run(out / "mse150_seed0", (9, 29), 45.0, heatmap=(150.0, 0.001))
    docs.mkdir()
    (docs / "convergence.md").write_text(f"# Title\n\nprose before\n\n{study.BEGIN}\nold\n{study.END}\n\nprose after\n")
    monkeypatch.setattr("sys.argv", ["convergence_study.py", "--out", str(out), "--docs", str(docs), "--iters", "128",
                                     "--eval-every", "64", "--phases", "report"])
    study.main()
    text = (docs / "convergence.md").read_text()
    assert text.startswith("# Title\n\nprose before") and text.endswith("prose after\n") and "old" not in text
    # iteration 128: baseline 30, 32, 34 -> 32.0 +- 2.0; heatmap 31, 36, 35 -> 34.0 +- 2.6; paired +1, +4, +1
    assert "| 128 | 32.0 ± 2.0 [30.0, 34.0] | 34.0 ± 2.6 [31.0, 36.0] | +2.0 [+1.0, +4.0] |" in text
    assert "| mug | 41.0 | 51.0 | +10.0 | 70.5 | 75.4 | +5.0 |" in text  # beside the paper's Table I row
    assert "| iteration | baseline (no heatmap) AP | MSE x1.5 (paper) AP | focal x1.5 AP | MSE x150 AP |" in text
    assert "| 128 | 30.0 | 31.0 | 33.0 | 29.0 |" in text  # the variants, seed 0 only
    # weight x loss_heatmap / loss_total after iteration 64: 1.5 x 0.002, 1.5 x 0.1, 150 x 0.001
    assert "| heatmap share of the loss after 64, % | - | 0.30 | 15.00 | 15.00 |" in text
    assert "median training speed 2.00 s per iteration" in text
    assert (docs / "convergence.png").stat().st_size > 10_000 and (docs / "convergence.html").is_file()


def test_sim2real_eval_reports_the_same_ap_as_the_core(tmp_path, tiny_model, capsys):
    import json

    from conftest import write_shapes_dataset
    from diffdet.data import load_split
    from diffdet.evaluate import coco_evaluate, detect_split, operating_point
    from diffdet.inference import SamplerOptions
    from diffdet.weights import save_checkpoint

    data = write_shapes_dataset(tmp_path, num_train=1, num_val=2)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model, ckpt)
    out = tmp_path / "rows.json"
    assert load_script("sim2real_eval").main(["--checkpoint", f"m={ckpt}", "--data", f"shapes={data}", "--steps", "1",
                                              "--nms", "class", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    split = load_split(str(data), "props", "val", tiny_model.cfg.class_names)
    detections = detect_split(tiny_model, split, SamplerOptions.from_config(tiny_model.cfg, steps=1), seed=0)
    assert row["ap"]["AP50"] == coco_evaluate(detections, split.samples, split.class_names)["AP50"]
    assert row["point"] == json.loads(json.dumps(operating_point(detections, split.samples), default=float))
    assert "| m | shapes (2 images) | class-wise |" in capsys.readouterr().out


def test_heatmap_frontier_pareto_keeps_only_unbeaten_points():
    pareto = load_script("heatmap_frontier").pareto
    points = [(0.5, 60.0), (0.1, 40.0), (0.2, 35.0), (0.3, 55.0), (0.3, 50.0), (1.0, 58.0)]
    assert pareto(points) == [(0.1, 40.0), (0.3, 55.0), (0.5, 60.0)]
    assert pareto([]) == []


def test_heatmap_frontier_scores_both_initialisations_with_the_core(tmp_path, tiny_model, capsys):
    import json

    from conftest import write_shapes_dataset
    from diffdet.data import load_split
    from diffdet.evaluate import coco_evaluate, detect_split
    from diffdet.inference import SamplerOptions
    from diffdet.weights import save_checkpoint

    data = write_shapes_dataset(tmp_path, num_train=1, num_val=2)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model, ckpt)
    out = tmp_path / "frontier.json"
    assert load_script("heatmap_frontier").main([
        "--checkpoint", str(ckpt), "--data", f"shapes={data}", "--proposals", "5", "12", "--steps", "1",
        "--time-images", "1", "--json", str(out), "--plot", str(tmp_path / "frontier.html")]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert sorted((r["init"], r["proposals"]) for r in rows) == [("heatmap", 5), ("heatmap", 12), ("random", 5),
                                                                 ("random", 12)]
    assert all(r["seconds"] > 0 for r in rows)
    split = load_split(str(data), "props", "val", tiny_model.cfg.class_names)
    options = SamplerOptions.from_config(tiny_model.cfg, steps=1, num_proposals=12)
    expected = coco_evaluate(detect_split(tiny_model, split, options, seed=0), split.samples, split.class_names)
    assert next(r for r in rows if r["init"] == "random" and r["proposals"] == 12)["AP"] == expected["AP"]
    assert "| shapes (2 images) | 1 | 12 |" in capsys.readouterr().out
    assert (tmp_path / "frontier.html").stat().st_size > 1000
    # --retime measures the times again and keeps the AP.
    again = tmp_path / "again.json"
    assert load_script("heatmap_frontier").main(["--checkpoint", str(ckpt), "--data", f"shapes={data}",
                                                 "--retime", str(out), "--time-images", "1", "--json", str(again)]) == 0
    retimed = json.loads(again.read_text())["rows"]
    assert [r["AP"] for r in retimed] == [r["AP"] for r in rows]
    assert [r["seconds"] for r in retimed] != [r["seconds"] for r in rows] and all(r["seconds"] > 0 for r in retimed)
