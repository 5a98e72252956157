import json

import pytest

from diffdet.plot import build_figure, cli, read_evals


def write_run(folder, aps):
    folder.mkdir(parents=True)
    rows = [{"iter": i, "loss_total": 1.0} for i in (1, 2)]
    rows += [{"iter": 100 * (k + 1), "eval": {"AP": ap, "AP50": ap + 10, "per_class": {"mug": ap, "marker": None}}}
             for k, ap in enumerate(aps)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_groups_seeds_into_mean_and_band(tmp_path):
    runs = [write_run(tmp_path / f"heat_seed{s}", [10 + s, 20 + s]) for s in (0, 2)]
    runs.append(write_run(tmp_path / "base", [5, 8]))
    fig = build_figure(runs)
    lines = [t for t in fig.data if t.type == "scatter" and t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["heat (n=2)", "base (n=1)"]
    assert list(lines[0].y) == [11.0, 21.0] and list(lines[0].x) == [100, 200]
    bars = [t for t in fig.data if t.type == "bar"]
    assert list(bars[0].y) == [21.0, 0.0]


def test_cli_writes_html_and_rejects_bad_input(tmp_path):
    run = write_run(tmp_path / "r", [1, 2])
    assert cli([str(run), "--out", str(tmp_path / "p.html")]) == 0
    assert (tmp_path / "p.html").stat().st_size > 1000
    with pytest.raises(SystemExit):
        cli([str(tmp_path / "missing"), "--out", str(tmp_path / "p.html")])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1"):
        read_evals(tmp_path / "bad")


def test_cli_writes_png(tmp_path):
    import cv2

    runs = [write_run(tmp_path / f"heat_seed{s}", [10 + s, 20 + s]) for s in (0, 1)]
    out = tmp_path / "curve.png"
    assert cli([*map(str, runs), "--out", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[:2] == (480, 1200)
    assert image.std() > 10  # something was drawn, not a blank canvas
