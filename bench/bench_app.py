"""Benchmarks of the browser app, printed as a table of measured figures.

    python bench/bench_app.py                       # the shipped checkpoint and examples
    python bench/bench_app.py --clients 8 --runs 20 --skip-browser

Measures: time from `python app.py` to the server answering and to the first detection, and from opening the page
to the first view drawn without a click; the play button's interval between positions; one 4-step run with the
trajectory on an example at 640x480 (the model alone and the whole Detect handler with every figure); the size of
each figure; the step-scrub time in headless Chromium (preview layer, then restyle); the rho and min_radius slider
moves in the browser and /target through gradio_client; and a load check: N concurrent gradio_client sessions x M
runs of /detect, with the error count and the server's resident memory along the way.

Without a checkpoint in --checkpoint-dir it benchmarks a random-init `tiny` checkpoint (same architecture and cost
as the trained one) and says so.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does, for the in-process measurements

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RESULTS: list[tuple[str, str, str]] = []


def report(name: str, value: str, target: str = "") -> None:
    RESULTS.append((name, value, target))
    print(f"  {name}: {value}" + (f"   (target {target})" if target else ""), flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def ensure_checkpoint(checkpoint_dir: Path) -> tuple[Path, str]:
    from app.controls import DEFAULT_CHECKPOINT
    from app.inputs import list_checkpoints

    names = list_checkpoints(checkpoint_dir)
    if names:
        return checkpoint_dir, DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT in names else names[0]
    import torch

    from diffdet.config import TINY
    from diffdet.model import build_model
    from diffdet.weights import save_checkpoint

    folder = Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    torch.manual_seed(0)
    save_checkpoint(build_model(TINY), folder / DEFAULT_CHECKPOINT)
    print(f"  (no checkpoint in {checkpoint_dir}: using a random-init tiny checkpoint, same cost as the trained one)")
    return folder, DEFAULT_CHECKPOINT


def pick_example(examples_dir: Path) -> Path:
    images = sorted(p for p in examples_dir.glob("*.jpg"))
    if images:
        return images[0]
    import numpy as np
    from PIL import Image

    path = Path(tempfile.mkdtemp(prefix="bench-ex-")) / "scene_bench.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path)
    return path


def start_server(checkpoint_dir: Path, examples_dir: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "DIFFDET_CHECKPOINT_DIR": str(checkpoint_dir), "DIFFDET_EXAMPLES_DIR": str(examples_dir),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    import httpx

    while True:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.perf_counter() - start > 180:
            proc.kill()
            raise SystemExit("app.py did not answer within 180 s")
        time.sleep(0.2)
    return proc, url, start


def bench_in_process(checkpoint_dir: Path, name: str, example: Path, repeats: int) -> None:
    import numpy as np

    from app.controls import MAX_CLASSES_OPTION
    from app.explorer import Explorer
    from app.inputs import load_image
    from diffdet.inference import SamplerOptions
    from app.runner import MODELS

    explorer = Explorer(checkpoint_dir, example.parent)
    image = load_image(example)
    detector = MODELS.get(checkpoint_dir / name, name)
    cfg = detector.config
    options = SamplerOptions(steps=4, num_proposals=cfg.num_proposals, record=True)
    detector.predict([image], options, seed=0)  # warm-up
    model_times = []
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        detector.predict([image], options, seed=seed)
        model_times.append(time.perf_counter() - start)
    report(f"model: 4-step run with trajectory, {image.shape[1]}x{image.shape[0]}, {cfg.num_proposals} proposals "
           f"({detector.device})", f"median {ms(statistics.median(model_times))}, min {ms(min(model_times))}",
           "<= 1000 ms")
    handler_times, json_times = [], []
    out = None
    for seed in range(100, 100 + repeats):
        start = time.perf_counter()
        out = explorer.detect(str(example), None, True, name, None, cfg.num_proposals, 4, 1.0, seed, True, 0.5,
                              True, True, 0.5, 0.0, 0.3, None, True, True, 2, 0, True, True, cfg.min_radius, cfg.rho,
                              MAX_CLASSES_OPTION, "side by side", MAX_CLASSES_OPTION)
        handler_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for fig in out[1:6]:
            fig.to_json()
        json_times.append(time.perf_counter() - start)
    report("Detect handler: run + every figure, table, files", f"median {ms(statistics.median(handler_times))}")
    report("figure serialisation (5 figures)", f"median {ms(statistics.median(json_times))}")
    for label, fig in zip(("denoising view", "step statistics", "heatmap view", "target view", "results view"),
                          out[1:6]):
        report(f"figure size: {label}", f"{len(fig.to_json().encode()) / 1024:.0f} kB, {len(fig.data)} traces")
    stored = out[9]
    target_times = []
    for rho in np.linspace(0.2, 1.2, 11):
        start = time.perf_counter()
        fig = explorer.render_target(str(example), None, True, stored, name, None, 4, float(rho), MAX_CLASSES_OPTION,
                                     0, 0.3)
        fig.to_json()
        target_times.append(time.perf_counter() - start)
    report("target re-synthesis handler + serialisation", f"median {ms(statistics.median(target_times))}")


def bench_client(url: str, name: str, example: Path, repeats: int, classes: list[str]) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    traj = None
    times = []
    for seed in range(200, 200 + repeats):
        start = time.perf_counter()
        out = client.predict(handle_file(str(example)), None, True, name, None, 100, 4, 1.0, seed, True, 0.5, True,
                             True, 0.5, 0.0, 0.3, classes, True, True, 2, 4, True, True, 4, 0.5, "max over classes",
                             "side by side", "max over classes", api_name="/detect")
        times.append(time.perf_counter() - start)
        traj = out[9]
    report("/detect round trip through gradio_client (4 steps)", f"median {ms(statistics.median(times))}")
    times = []
    for rho in (0.3, 0.5, 0.7, 0.9, 1.1, 0.4, 0.6, 0.8):
        start = time.perf_counter()
        client.predict(handle_file(str(example)), None, True, handle_file(traj), name, None, 4, rho,
                       "max over classes", 0, 0.3, api_name="/target")
        times.append(time.perf_counter() - start)
    report("/target round trip through gradio_client (rho changes by API; the page draws slider moves itself)",
           f"median {ms(statistics.median(times))}")


# Arm a timer on a target-view slider (rho or min_radius): press -> the target plot shows a different heatmap (checked
# every frame). A redraw without a Plotly.react call since the press was drawn by the page (slider frames).
ARM_SLIDER = """(id) => {
  const range = document.querySelector(`#${id} input[type=range]`);
  const current = () => { const gd = document.querySelector('#target-plot .js-plotly-plot');
    const t = gd && gd.data ? gd.data.find(t => t.name === 'target') : null;
    return t ? JSON.stringify(t.z.bdata ? t.z.bdata : t.z) : null; };
  const before = current();
  if (!window.__reactCalls) {  // note when Gradio hands the new figure to Plotly.react, and when react returns
    const P = window.Plotly, react = P.react;
    window.__reactCalls = [];
    P.react = function (...args) { const start = performance.now(); const out = react.apply(this, args);
      window.__reactCalls.push([start, performance.now()]); return out; };
  }
  window.__slider = new Promise(resolve => {
    range.addEventListener('pointerdown', () => {
      const t0 = performance.now();
      const poll = () => { const now = current();
        if (now === null || now === before) { requestAnimationFrame(poll); return; }
        const done = performance.now() - t0;
        const fetch = performance.getEntriesByType('resource').filter(e => e.name.includes('/gradio_api/')
          && e.startTime >= t0).pop();
        const react = window.__reactCalls.filter(r => r[0] >= t0).pop();
        resolve([done, fetch ? fetch.startTime - t0 : null, fetch ? fetch.responseEnd - t0 : null,
                 react ? react[0] - t0 : null, react ? react[1] - t0 : null]); };
      requestAnimationFrame(poll);
    }, {capture: true, once: true});
  });
}"""

# Press the Plotly slider at one step; time until the pressed position's boxes are painted (the page's preview
# layer, drawn in the press's own task, shows them with the next frame; where there is no layer, the restyle does),
# until the restyle of the whole view (labels, tracks, hover) has finished, and until the next frame after that.
SCRUB = """async (index) => {
  const gd = document.querySelector('#denoise-plot .js-plotly-plot');
  const rail = gd.querySelector('.slider-rail-touch-rect');
  const label = gd.querySelectorAll('.slider-tick-rect')[index].getBoundingClientRect();  // one tick per step
  const r = rail.getBoundingClientRect();
  const x = label.x + label.width / 2, y = r.y + r.height / 2;
  await new Promise(res => requestAnimationFrame(res));
  const done = new Promise(res => { const f = () => { gd.removeListener('plotly_restyle', f); res(performance.now()); };
                                    gd.on('plotly_restyle', f); });
  const t0 = performance.now();
  rail.dispatchEvent(new MouseEvent('mousedown', {clientX: x, clientY: y, bubbles: true, buttons: 1}));
  window.dispatchEvent(new MouseEvent('mouseup', {clientX: x, clientY: y, bubbles: true}));
  const svg = gd.querySelector('svg.dd-tween'), preview = !!svg && svg.style.display !== 'none';
  let boxes = null;
  if (preview) { await new Promise(res => requestAnimationFrame(res)); boxes = performance.now() - t0; }
  const restyled = await Promise.race([done, new Promise(res => setTimeout(() => res(null), 2000))]);
  await new Promise(res => requestAnimationFrame(res));
  const full = performance.now() - t0;
  return [restyled === null ? null : restyled - t0, full, boxes === null ? full : boxes, preview];
}"""

# Note when each played position has been restyled (Play drives Plotly.restyle from the page), and the frames
# drawn while the boxes glide between positions (the SVG layer Play draws over the plot, where the app has one).
ARM_PLAY = """() => { window.__playTimes = []; window.__glideFrames = [];
  const gd = document.querySelector('#denoise-plot .js-plotly-plot');
  gd.on('plotly_restyle', () => window.__playTimes.push(performance.now()));
  const frame = (now) => { const svg = gd.querySelector('svg.dd-tween');
    if (svg && svg.style.display !== 'none') window.__glideFrames.push(now);
    if (window.__playTimes.length < 1000) requestAnimationFrame(frame); };
  requestAnimationFrame(frame); }"""

# The frame interval of this (headless) browser: the floor under any "until painted" figure.
FRAME = """async () => { const t = []; for (let i = 0; i < 30; i++) { t.push(await new Promise(r =>
  requestAnimationFrame(r))); } const d = t.slice(1).map((v, i) => v - t[i]); d.sort((a, b) => a - b);
  return d[Math.floor(d.length / 2)]; }"""


def bench_browser(url: str) -> None:
    if not os.path.exists(CHROMIUM):
        report("browser figures", f"skipped: no Chromium at {CHROMIUM}")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.set_default_timeout(120_000)
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("#detect-btn")
        report("page load to interactive (Chromium)", ms(time.perf_counter() - start))
        page.wait_for_function("() => { const gd = document.querySelector('#denoise-plot .js-plotly-plot');"
                               " return gd && gd.data && gd.data.length > 1; }")
        report("page open to first view drawn (first example, detected at start; no click)",
               ms(time.perf_counter() - start))
        before = page.locator("#status").inner_text()
        start = time.perf_counter()
        page.locator("#examples button, #examples .gallery-item, #examples td").nth(1).click()
        page.wait_for_function("(b) => { const s = document.querySelector('#status').innerText;"
                               " return s !== b && s.includes('detection(s)'); }", arg=before)
        report("example click to denoising view drawn (browser)", ms(time.perf_counter() - start))
        count = page.evaluate("() => document.querySelector('#denoise-plot .js-plotly-plot').layout.sliders[0]"
                              ".steps.length")
        traces = page.evaluate("() => document.querySelector('#denoise-plot .js-plotly-plot').data.length")
        report("browser frame interval (floor of 'painted' figures)", f"{page.evaluate(FRAME):.0f} ms")
        pairs = [page.evaluate(SCRUB, i % count) for i in list(range(count)) * 3]
        restyle = [p[0] for p in pairs if p[0] is not None]
        painted = sorted(p[1] for p in pairs)
        boxes = sorted(p[2] for p in pairs)
        report(f"step scrub in the browser ({count} positions x 3 = {len(pairs)} moves, {traces} traces, "
               f"{sum(p[3] for p in pairs)} with the preview layer): press to the pressed boxes painted",
               f"median {statistics.median(boxes):.0f} ms, p90 {boxes[int(0.9 * len(boxes))]:.0f} ms", "<= 60 ms")
        report("step scrub in the browser: press to restyle done",
               f"median {statistics.median(restyle):.0f} ms" if restyle else "no plotly_restyle event seen")
        report("step scrub in the browser: press to the whole view (labels, tracks, hover) painted",
               f"median {statistics.median(painted):.0f} ms, p90 {painted[int(0.9 * len(painted))]:.0f} ms")
        page.evaluate(SCRUB, 0)
        page.evaluate(ARM_PLAY)
        page.locator("#play-btn").click()
        intervals = page.evaluate("() => new Promise(r => { const done = () => window.__playTimes.length >= "
                                  f"{count - 1} ? r(window.__playTimes) : setTimeout(done, 200); done(); }})")
        gaps = sorted(b - a for a, b in zip(intervals, intervals[1:]))
        report(f"play: interval between drawn positions ({len(gaps)} moves)",
               f"median {statistics.median(gaps):.0f} ms, p90 {gaps[int(0.9 * len(gaps))]:.0f} ms",
               "about 1 s, steady")
        frames = page.evaluate("() => window.__glideFrames")
        steps_ = sorted(b - a for a, b in zip(frames, frames[1:]) if b - a < 200)  # gaps between glides dropped
        if steps_:
            report(f"play: frame interval while the boxes glide ({len(steps_)} frames)",
                   f"median {statistics.median(steps_):.0f} ms, p90 {steps_[int(0.9 * len(steps_))]:.0f} ms",
                   "a frame per display refresh (17 ms)")
        page.get_by_role("tab", name="Target").click()
        page.wait_for_function("() => { const gd = document.querySelector('#target-plot .js-plotly-plot');"
                               " return gd && gd.data && gd.data.some(t => t.name === 'target'); }")
        for slider in ("rho", "min-radius"):
            rows = []
            locator = page.locator(f"#{slider} input[type=range]")
            locator.scroll_into_view_if_needed()
            box = locator.bounding_box()
            for fraction in (0.3, 0.6, 0.45, 0.8, 0.35, 0.7, 0.5, 0.9) * 2:
                page.evaluate(ARM_SLIDER, slider)
                page.mouse.click(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
                rows.append(page.evaluate("() => Promise.race([window.__slider, new Promise(r => setTimeout("
                                          "() => r([1e9, null, null, null, null]), 10000))])"))
                page.wait_for_timeout(300)  # the frames of a server-drawn move are inflated
            in_page = [r[0] for r in rows if r[3] is None]
            server = [r for r in rows if r[3] is not None]
            times = [r[0] for r in rows]
            report(f"{slider} slider in the browser (press to redrawn target, {len(times)} moves; "
                   f"{len(in_page)} drawn by the page from the figure's frames, {len(server)} through the server)",
                   f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms", "<= 150 ms")
            if in_page:
                report(f"{slider}: moves drawn by the page", f"median {statistics.median(in_page):.0f} ms, "
                       f"max {max(in_page):.0f} ms")
            if server:
                def med(i: int) -> float:
                    return statistics.median(r[i] for r in server if r[i] is not None)
                report(f"{slider}: moves through the server, where the time goes (medians from the press)",
                       f"request sent {med(1):.0f} ms, response in {med(2):.0f} ms, Plotly.react called "
                       f"{med(3):.0f} ms and done {med(4):.0f} ms, seen drawn {med(0):.0f} ms")
        browser.close()


def bench_load(url: str, pid: int, name: str, example: Path, clients: int, runs: int, classes: list[str]) -> None:
    from gradio_client import Client, handle_file

    errors: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()
    memory = [rss_mb(pid)]

    def worker(index: int) -> None:
        client = Client(url, verbose=False)
        for run in range(runs):
            start = time.perf_counter()
            try:
                client.predict(handle_file(str(example)), None, True, name, None, 100, 4, 1.0,
                               1000 * index + run, True, 0.5, True, True, 0.5, 0.0, 0.3, classes, True, True, 2, 4, True,
                               True, 4, 0.5, "max over classes", "side by side", "max over classes",
                               api_name="/detect")
                with lock:
                    latencies.append(time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 -- counted and printed, the point of a load test
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")

    def sample_memory(stop: threading.Event) -> None:
        while not stop.wait(2.0):
            memory.append(rss_mb(pid))

    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(stop,), daemon=True)
    sampler.start()
    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    stop.set()
    memory.append(rss_mb(pid))
    total = clients * runs
    report(f"load: {clients} clients x {runs} runs of /detect", f"{total - len(errors)}/{total} ok, "
           f"{len(errors)} errors, {elapsed:.0f} s, {total / elapsed:.2f} runs/s", "0 errors")
    if latencies:
        ordered = sorted(latencies)
        report("load: latency per run (queued, concurrency_limit=1)",
               f"median {statistics.median(ordered):.1f} s, p95 {ordered[int(0.95 * (len(ordered) - 1))]:.1f} s")
    quarter = max(1, len(memory) // 4)
    report("load: server memory (RSS)", f"start {memory[0]:.0f} MB, after first quarter "
           f"{max(memory[:quarter + 1]):.0f} MB, peak {max(memory):.0f} MB, end {memory[-1]:.0f} MB")
    for error in errors[:5]:
        print("    error:", error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint-dir", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--examples-dir", type=Path, default=ROOT / "examples")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each timed single call")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args(argv)

    import torch

    print(f"DiffusionDet Explorer app benchmark · torch {torch.__version__} · {os.cpu_count()} CPU(s), "
          f"{torch.get_num_threads()} torch threads · CUDA {'yes' if torch.cuda.is_available() else 'no'} · "
          f"load average {os.getloadavg()[0]:.1f}")
    checkpoint_dir, name = ensure_checkpoint(args.checkpoint_dir)
    example = pick_example(args.examples_dir)
    print(f"  checkpoint {name} in {checkpoint_dir}; example {example.name}")
    from app.runner import read_config

    cfg = read_config(checkpoint_dir / name, name)
    classes = list(cfg.class_names)

    print("\n[server start]")
    proc, url, started = start_server(checkpoint_dir, example.parent)
    report("python app.py to server answering", f"{time.perf_counter() - started:.1f} s")
    try:
        from gradio_client import Client, handle_file

        client = Client(url, verbose=False)
        client.predict(handle_file(str(example)), name, 4, 0, 100, 1.0, 0.0, 0.3, api_name="/predict")
        report("python app.py to first detection (/predict)", f"{time.perf_counter() - started:.1f} s")
        print("\n[in process]")
        bench_in_process(checkpoint_dir, name, example, args.repeats)
        print("\n[through the server]")
        bench_client(url, name, example, args.repeats, classes)
        if not args.skip_browser:
            print("\n[browser]")
            bench_browser(url)
        if not args.skip_load:
            print("\n[load]")
            bench_load(url, proc.pid, name, example, args.clients, args.runs, classes)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print("\nsummary")
    width = max(len(r[0]) for r in RESULTS)
    for name_, value, target in RESULTS:
        print(f"  {name_:<{width}}  {value}" + (f"  [target {target}]" if target else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
