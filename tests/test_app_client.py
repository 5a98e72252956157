"""The launched app driven through gradio_client: every named endpoint, every kind of bad upload, file access."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

import test_app_support as support
from test_app_support import CHECKPOINT_NAME, app_env  # noqa: F401  (fixture)
from app.controls import MAX_CLASSES_OPTION
from diffdet.config import TINY

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

SAMPLER = [20, 2, 1.0, 0, True, 0.5, True, True, 0.5, 0.0]  # proposals .. heatmap_init
DISPLAY = [0.0, list(TINY.class_names), True, True, 2, 4, True, True]  # score_threshold .. show_tracks
VIEWS = [4, 0.5, MAX_CLASSES_OPTION, "side by side", MAX_CLASSES_OPTION]


@pytest.fixture(scope="module")
def server(app_env: support.AppEnv):  # noqa: F811
    with support.launched_app(app_env, "client") as launched:
        yield launched


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server[0].local_url, verbose=False, download_files=str(server[1].output_dir / "downloads"))


@pytest.fixture(scope="module")
def example(app_env: support.AppEnv) -> str:  # noqa: F811
    return str(app_env.examples_dir / "scene_00.jpg")


def detect(client: Client, image: str, gt: str | None = None, checkpoint: str = CHECKPOINT_NAME) -> tuple:
    return client.predict(handle_file(image), handle_file(gt) if gt else None, True, checkpoint, None, *SAMPLER,
                          *DISPLAY, *VIEWS, api_name="/detect")


def plot_json(value: dict) -> dict:
    assert value["type"] == "plotly"
    return json.loads(value["plot"])


def test_named_endpoints_are_listed(client: Client) -> None:
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/predict", "/detect", "/target", "/render", "/heatmap", "/compare", "/training_curves",
            "/checkpoint_info"} <= names


def test_endpoint_parameters_are_named_after_the_handlers(client: Client) -> None:
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    params = {name: [p["parameter_name"] for p in spec["parameters"]] for name, spec in api.items()}
    assert params["/predict"] == ["image_path", "checkpoint", "steps", "seed", "proposals", "eta", "heatmap_init",
                                  "score_threshold"]
    assert {"steps", "seed", "proposals", "eta", "renewal", "score_threshold", "stage"} <= set(params["/detect"])
    assert {"seed_b", "steps_b", "eta_b"} <= set(params["/compare"]) and "position" in params["/render"]
    assert not [p for names in params.values() for p in names if p.startswith("param_")]


def test_predict_takes_its_parameters_by_name(client: Client, example: str) -> None:
    result, _ = client.predict(image_path=handle_file(example), checkpoint=CHECKPOINT_NAME, steps=1, seed=0,
                               proposals=20, eta=1.0, heatmap_init=0.0, score_threshold=0.0, api_name="/predict")
    assert result["settings"]["steps"] == 1 and len(result["detections"]) > 0


def test_predict_returns_detections_and_trajectory(client: Client, example: str) -> None:
    result, traj_file = client.predict(handle_file(example), CHECKPOINT_NAME, 2, 0, 20, 1.0, 0.0, 0.0,
                                       api_name="/predict")
    assert result["image_size_hw"] == [96, 128] and result["detections"]
    traj = json.loads(Path(traj_file).read_text())
    assert len(traj["boxes_xyxy"]) == 2 and len(traj["boxes_xyxy"][0][0]) == 20


def test_detect_returns_every_view(client: Client, example: str) -> None:
    out = detect(client, example)
    status, denoise, stats, heat, target, results, table, metrics, downloads, stored, profile, converge = out
    assert "detection(s)" in status and "ground truth: example scene_00.jpg" in status
    fig = plot_json(denoise)
    assert len(fig["layout"]["sliders"][0]["steps"]) == 5
    assert fig["data"][0]["type"] == "image" and fig["data"][0]["source"].startswith("data:image/jpeg")
    for value in (stats, heat, target, results, converge):
        plot_json(value)
    assert table["headers"][:3] == ["#", "class", "score"]
    assert len(downloads) == 3 and stored.endswith(".npz")


def test_render_heatmap_and_target_endpoints(client: Client, example: str) -> None:
    stored = detect(client, example)[9]
    traj = handle_file(stored)
    status, denoise, *_ = client.predict(traj, handle_file(example), None, True, 0.2, ["mug"], False, False, 1, 1,
                                         True, False, 3, api_name="/render")
    assert "stage 1/4" in json.dumps(plot_json(denoise)) and "score ≥ 0.20" in status
    assert plot_json(denoise)["layout"]["sliders"][0]["active"] == 3  # the position asked for
    heat = client.predict(traj, handle_file(example), None, True, "mug", "overlay on image", 4, 0.5, 0.3,
                          api_name="/heatmap")
    assert plot_json(heat)["layout"]["updatemenus"]
    timings, sums = [], []
    for rho in (0.2, 0.8):
        start = time.perf_counter()
        fig = client.predict(handle_file(example), None, True, traj, CHECKPOINT_NAME, None, 2.0, rho,
                             MAX_CLASSES_OPTION, 0, 0.3, api_name="/target")
        timings.append(time.perf_counter() - start)
        target = [t for t in plot_json(fig)["data"] if t.get("name") == "target"][0]
        sums.append(json.dumps(target["z"]))
    assert sums[0] != sums[1]
    print(f"/target round trip through gradio_client: {min(timings) * 1000:.0f} ms")


def test_compare_training_and_checkpoint_info(client: Client, example: str) -> None:
    fig, summary = client.predict(handle_file(example), None, True, CHECKPOINT_NAME, None, *SAMPLER, *DISPLAY, 1, 1,
                                  0.0, 0.0, True, api_name="/compare")
    assert len(plot_json(fig)["layout"]["sliders"][0]["steps"]) == 5 and "seed 1, 1 step(s)" in summary
    fig, summary = client.predict(None, CHECKPOINT_NAME, api_name="/training_curves")
    assert "best AP" in summary and plot_json(fig)["data"]
    info = client.predict(CHECKPOINT_NAME, None, api_name="/checkpoint_info")
    assert "efficientnet_lite0" in info[0]


@pytest.mark.parametrize("name", ["zero_byte", "not_image", "corrupt", "bomb", "oversized"])
def test_bad_uploads_get_a_message_and_the_server_keeps_serving(client: Client, app_env: support.AppEnv,  # noqa
                                                                example: str, name: str) -> None:
    path, message = support.bad_uploads(app_env.work_dir / "client_bad")[name]
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(path)), CHECKPOINT_NAME, 1, 0, 10, 1.0, 0.0, 0.0, api_name="/predict")
    assert message in str(info.value) and "Traceback" not in str(info.value)
    result, _ = client.predict(handle_file(example), CHECKPOINT_NAME, 1, 0, 10, 1.0, 0.0, 0.0, api_name="/predict")
    assert result["image_size_hw"] == [96, 128]


def test_odd_images_are_accepted(client: Client, app_env: support.AppEnv) -> None:  # noqa: F811
    for name, path in support.odd_but_valid_uploads(app_env.work_dir / "client_odd").items():
        result, _ = client.predict(handle_file(str(path)), CHECKPOINT_NAME, 1, 0, 10, 1.0, 0.0, 0.0,
                                   api_name="/predict")
        assert result["image_size_hw"][0] > 0, name


def test_bad_checkpoint_name_and_settings(client: Client, example: str) -> None:
    with pytest.raises(AppError, match="Unknown checkpoint|not in the list of choices"):
        client.predict(handle_file(example), "../app.py", 1, 0, 10, 1.0, 0.0, 0.0, api_name="/predict")
    with pytest.raises(AppError, match="DDIM steps must be between|greater than maximum value"):
        client.predict(handle_file(example), CHECKPOINT_NAME, 10_000, 0, 10, 1.0, 0.0, 0.0, api_name="/predict")


def test_only_examples_are_served_from_disk(server, app_env: support.AppEnv) -> None:  # noqa: F811
    demo, _ = server
    base = demo.local_url.rstrip("/")
    root = Path(__file__).resolve().parent.parent
    secret = [root / "app" / "ui.py", app_env.checkpoint_dir / CHECKPOINT_NAME, Path("/etc/passwd"),
              app_env.checkpoint_dir / "diffdet_tiny_props_metrics.jsonl"]
    with httpx.Client(timeout=10) as http:
        for path in secret:
            response = http.get(f"{base}/gradio_api/file={path}")
            assert response.status_code in (403, 404), (path, response.status_code)
        assert http.get(f"{base}/gradio_api/file={app_env.examples_dir / 'scene_00.jpg'}").status_code == 200
        assert http.get(f"{base}/gradio_api/file=../../../../etc/passwd").status_code in (403, 404)


def test_app_py_flags_answer_before_loading_and_reach_the_server(app_env: support.AppEnv) -> None:  # noqa: F811
    """``python app.py --help`` lists the flags and a bad port is refused at once (before torch and the model load;
    --help started the whole server before); --port and the folder flags reach the launched app."""
    import socket
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, str(root / "app.py")]
    shown = subprocess.run(command + ["--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "--port" in shown.stdout and "--checkpoint-dir" in shown.stdout
    refused = subprocess.run(command + ["--port", "70000"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "port must be 1-65535" in refused.stderr
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(command + ["--port", str(port), "--host", "127.0.0.1", "--checkpoint-dir",
                                       str(app_env.checkpoint_dir), "--examples-dir", str(app_env.examples_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root)
    try:
        deadline, page = time.time() + 180, None
        while time.time() < deadline and proc.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(1)
        assert page is not None and page.status_code == 200, proc.poll()
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).text
        assert "scene_00.jpg" in config  # the examples of --examples-dir
    finally:
        proc.terminate()
        proc.wait(timeout=30)
