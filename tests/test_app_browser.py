"""End to end in headless Chromium (Playwright): the first view is detected without a click, run an example, scrub
and play the step slider in the browser, legend toggles, labels that do not overlap, move rho and see the target
change, a shared link restores the view, a phone-size run, a corrupt upload. Screenshots go to tests/_output/.

Tests in this file share one page and run in order.
"""
from __future__ import annotations


import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import test_app_support as support
from test_app_support import CHROMIUM, CHROMIUM_ARGS, OUTPUT_DIR, app_env  # noqa: F401  (fixture)

if not os.path.exists(CHROMIUM):
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

TIMEOUT_MS = int(os.environ.get("APP_BROWSER_TIMEOUT_MS", 90_000))  # a run on two busy CPU cores can take several seconds

PLOT_STATE = """(id) => {
  const gd = document.querySelector(`#${id} .js-plotly-plot`);
  if (!gd || !gd.data) return null;
  return {
    visible: gd.data.map(t => t.visible === true || t.visible === undefined),
    captions: gd.data.filter(t => t.name === 'caption' && t.visible === true).map(t => t.text[0]),
    hover: gd.data.filter(t => t.visible === true && t.mode === 'markers' && t.name)
      .map(t => [t.name, t.customdata ? t.customdata.length : 0, t.hovertemplate || '']),
    active: gd.layout.sliders && gd.layout.sliders.length ? gd.layout.sliders[0].active : null,
    positions: gd.layout.sliders && gd.layout.sliders.length ? gd.layout.sliders[0].steps.length : 0,
    count: gd.data.length,
  };
}"""

TARGET_Z = """() => {
  const gd = document.querySelector('#target-plot .js-plotly-plot');
  if (!gd || !gd.data) return null;
  const t = gd.data.find(t => t.name === 'target');
  if (!t) return null;
  const z = t.z;
  return JSON.stringify(z.bdata ? z.bdata : z);
}"""

# Click the Plotly slider's rail at a step in the page itself and time until the restyle has been drawn.
SCRUB = """async ([id, index]) => {
  const gd = document.querySelector(`#${id} .js-plotly-plot`);
  const rail = gd.querySelector('.slider-rail-touch-rect');
  const labels = gd.querySelectorAll('.slider-tick-rect');  // one tick per step (the labels skip steps)
  const label = labels[index].getBoundingClientRect();
  const r = rail.getBoundingClientRect();
  const x = label.x + label.width / 2, y = r.y + r.height / 2;
  let restyled = null;
  const done = new Promise(res => { const f = () => { restyled = performance.now(); gd.removeListener('plotly_restyle', f);
    res(); }; gd.on('plotly_restyle', f); });
  const t0 = performance.now();
  rail.dispatchEvent(new MouseEvent('mousedown', {clientX: x, clientY: y, bubbles: true, buttons: 1}));
  window.dispatchEvent(new MouseEvent('mouseup', {clientX: x, clientY: y, bubbles: true}));
  await Promise.race([done, new Promise(res => setTimeout(res, 5000))]);
  await new Promise(res => requestAnimationFrame(res));
  const painted = performance.now();
  return {restyle_ms: restyled === null ? null : restyled - t0, painted_ms: painted - t0,
          active: gd.layout.sliders[0].active};
}"""

# Press the slider at a step and read, before the next frame, the boxes the page's preview layer shows (plot-area
# pixels, seen ones only); then, once the restyle is done, the boxes Plotly draws in the slot traces (same units).
PREVIEW = """async (index) => {
  const gd = document.querySelector('#denoise-plot .js-plotly-plot');
  const rail = gd.querySelector('.slider-rail-touch-rect');
  const label = gd.querySelectorAll('.slider-tick-rect')[index].getBoundingClientRect();
  const r = rail.getBoundingClientRect();
  const x = label.x + label.width / 2, y = r.y + r.height / 2;
  const done = new Promise(res => { const f = () => { gd.removeListener('plotly_restyle', f); res(true); };
                                    gd.on('plotly_restyle', f); });
  rail.dispatchEvent(new MouseEvent('mousedown', {clientX: x, clientY: y, bubbles: true, buttons: 1}));
  window.dispatchEvent(new MouseEvent('mouseup', {clientX: x, clientY: y, bubbles: true}));
  const svg = gd.querySelector('svg.dd-tween');
  const shown = !!svg && svg.style.display !== 'none';
  const restyledAlready = gd.layout.sliders[0].active === index && !shown;
  const preview = shown ? Array.from(svg.querySelectorAll('rect')).filter(e => +e.getAttribute('stroke-opacity') > 0)
    .map(e => ['x', 'y', 'width', 'height'].map(a => +e.getAttribute(a))) : [];
  const restyled = await Promise.race([done, new Promise(res => setTimeout(() => res(false), 5000))]);
  await new Promise(res => requestAnimationFrame(res));
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, ids = new Set(gd.layout.sliders[0].steps[0].args[1]);
  const drawn = [];
  gd._fullData.forEach((t, i) => {
    if (!ids.has(i) || t.visible !== true || t.mode !== 'lines' || t.name === 'centre tracks' || !t.x) return;
    for (let k = 0; k + 4 < t.x.length; k += 6) {
      if (t.x[k] === null || Number.isNaN(t.x[k])) continue;
      const x0 = xa.l2p(t.x[k]), x1 = xa.l2p(t.x[k + 1]), y0 = ya.l2p(t.y[k]), y1 = ya.l2p(t.y[k + 2]);
      drawn.push([Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0)]);
    }
  });
  return {shown, restyledAlready, restyled, preview, drawn, active: gd.layout.sliders[0].active, scale: Math.abs(xa._m),
          after: !!svg && svg.style.display !== 'none', caption: gd.data.find(t => t.name === 'caption').text[0]};
}"""


@pytest.fixture(scope="module")
def server(app_env: support.AppEnv):  # noqa: F811
    with support.launched_app(app_env, "browser") as (demo, _):
        yield demo


@pytest.fixture(scope="module")
def page(server):
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.local_url)
        page.wait_for_selector("#detect-btn")
        page.errors = errors
        yield page
        browser.close()


def shot(page, name: str, selector: str | None = None) -> Path:
    path = OUTPUT_DIR / f"browser_{name}.png"
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path


def wait_for_plot(page, element_id: str, changed_from: dict | None = None) -> dict:
    page.wait_for_function(
        """([id, before]) => { const gd = document.querySelector(`#${id} .js-plotly-plot`);
             return gd && gd.data && gd.data.length > 0 && (before === null || gd.data.length !== before.count
               || JSON.stringify(gd.data.map(t => t.visible)) !== JSON.stringify(before.visible)); }""",
        arg=[element_id, changed_from], timeout=TIMEOUT_MS)
    return page.evaluate(PLOT_STATE, element_id)


ACTIVE = "() => document.querySelector('#denoise-plot .js-plotly-plot').layout.sliders[0].active"


def test_first_view_is_detected_without_a_click(page) -> None:
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('detection(s)')")
    state = wait_for_plot(page, "denoise-plot")
    assert "scene_00.jpg" in page.locator("#status").inner_text()  # the first example, run at launch
    assert state["positions"] == 2 * 10 + 1 and state["active"] == 20  # the teaching preset's 10 steps, at final
    assert page.evaluate("() => document.querySelector('#walkthrough-sidebar').classList.contains('open')")
    shot(page, "00_first_view")


def test_page_loads_with_controls_and_walkthrough(page) -> None:
    assert page.locator("#walkthrough").inner_text().count("noise") > 0
    page.get_by_role("button", name="Classes shown (10)").click()
    page.wait_for_function("() => document.querySelectorAll('#classes input[type=checkbox]').length === 10")
    shot(page, "01_load")
    page.get_by_role("button", name="Model").click()
    assert page.locator("#checkpoint input").input_value() == support.CHECKPOINT_NAME
    page.wait_for_function("() => document.querySelector('#model-info').innerText.includes('efficientnet_lite0')")
    # the three sampler checkboxes share a row: each label fits inside its own column
    overflow = page.evaluate("""() => ['renewal', 'ensemble', 'nms'].map(id => {
      const block = document.querySelector(`#${id}`).getBoundingClientRect();
      const text = document.querySelector(`#${id} .label-text`).getBoundingClientRect();
      return [id, Math.round(text.right - block.right)]; })""")
    assert all(excess <= 0 for _, excess in overflow), overflow
    # the preview image starts below the image input's floating label badge (it covered the top of the image)
    gap = page.evaluate("""() => document.querySelector('#input-image .image-frame img').getBoundingClientRect().top
      - document.querySelector('#input-image label').getBoundingClientRect().bottom""")
    assert gap >= 0, gap


def test_running_an_example_draws_the_denoising_view(page) -> None:
    before = page.evaluate(PLOT_STATE, "denoise-plot")
    page.locator("#examples button, #examples .gallery-item, #examples td").nth(1).click()
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('scene_01')")
    state = wait_for_plot(page, "denoise-plot")
    assert state["positions"] == 2 * 10 + 1  # 10 steps (the default) -> 1·in 1·out ... 10·out final
    assert state["active"] == 20  # opens at the final detections
    assert state["captions"] == ["<b>Final detections (after ensemble and NMS)</b>"] and before is not None
    assert "ground truth: example scene_01.jpg" in page.locator("#status").inner_text()
    shot(page, "02_run")
    shot(page, "02_denoise_plot", "#denoise-plot")
    # the step chart has no tool bar over its legend on hover; the image keeps its tools (zoom)
    for plot, tools in (("#stats-plot", False), ("#denoise-plot", True)):
        page.locator(f"{plot} .js-plotly-plot").hover()
        assert page.locator(f"{plot} .modebar").first.is_visible() == tools, plot


def test_step_slider_switches_traces_in_the_browser(page) -> None:
    before = page.evaluate(PLOT_STATE, "denoise-plot")
    proposals = None
    for index in (0, 1, 2, 3, 20, 1, 0):
        result = page.evaluate(SCRUB, ["denoise-plot", index])
        assert result["active"] == index
        assert result["restyle_ms"] is not None  # switched by Plotly.restyle in the page, no server round trip
        state = page.evaluate(PLOT_STATE, "denoise-plot")
        assert state["count"] == before["count"]  # the slots are restyled in place, none added or removed
        assert len(state["captions"]) == 1
        # One hover trace per position, and it belongs to the position shown.
        assert len(state["hover"]) == 1
        name, rows, template = state["hover"][0]
        if index == 20:
            assert name == "boxes" and "detection #" in template
            continue
        step, kind = index // 2 + 1, ("in", "out")[index % 2]
        assert state["captions"][0].startswith(f"<b>Step {step}/10")
        if kind == "in":
            assert name == "inputs: noise" and f"fed to step {step}/10" in template
            proposals = proposals or rows
            assert rows == proposals  # every proposal has a hover point
        else:
            assert name == "boxes" and f"step {step}/10 · stage" in template and rows == proposals
    after = page.evaluate(PLOT_STATE, "denoise-plot")
    assert after["captions"][0].startswith("<b>Step 1/10 · boxes fed in")
    assert after["captions"] != before["captions"]
    shot(page, "03_scrubbed_step1_in", "#denoise-plot")
    page.evaluate(SCRUB, ["denoise-plot", 1])
    shot(page, "03_scrubbed_step1_out", "#denoise-plot")



def test_a_slider_press_shows_the_pressed_boxes_at_once_then_the_whole_view(page) -> None:
    """Plotly's restyle of the whole view takes ~70-100 ms on a 2-core CPU; the pressed position's boxes are drawn
    on the preview layer before it, the same boxes the restyle then draws, and the layer goes once it has."""
    wait_for_plot(page, "denoise-plot")
    for index in (2, 3, 20, 0):  # step 2 fed in, step 2's prediction, the final detections, step 1 fed in
        result = page.evaluate(PREVIEW, index)
        assert result["shown"] and not result["restyledAlready"], index  # the preview came first
        assert result["restyled"] and result["active"] == index and not result["after"]
        preview, drawn = np.array(result["preview"]).reshape(-1, 4), np.array(result["drawn"]).reshape(-1, 4)
        assert len(preview) == len(drawn) > 0, (index, len(preview), len(drawn))
        # each preview box is one the restyle drew, to the layer's precision: half an image pixel, here
        # ``scale`` screen pixels per image pixel
        nearest = np.abs(preview[:, None] - drawn[None]).max(axis=2).min(axis=1)
        assert nearest.max() <= 0.5 * result["scale"] + 0.5, (index, nearest.max(), result["scale"])
    # a hidden layer stays hidden in the preview
    page.locator("#denoise-legend .layer-toggle[data-group=boxes]").click()
    try:
        result = page.evaluate(PREVIEW, 3)
        assert result["shown"] and result["preview"] == [] and result["drawn"] == []
    finally:
        page.locator("#denoise-legend .layer-toggle[data-group=boxes]").click()


CLIP_REFERENCES = """() => {
  const gd = document.querySelector('#denoise-plot .js-plotly-plot');
  return {page: window.location.href.split('#')[0],
          clips: Array.from(gd.querySelectorAll('[clip-path]')).map(el => el.getAttribute('clip-path'))};
}"""


def test_the_image_clip_follows_the_address_after_scrubbing(page) -> None:
    """Scrubbing rewrites the address (pos=); Plotly's clip paths must still point at this page, or the noisy
    boxes of the middle steps are drawn over the slider and the page."""
    wait_for_plot(page, "denoise-plot")
    for index in (11, 12):
        page.evaluate(SCRUB, ["denoise-plot", index])
        page.wait_for_function("(i) => new URLSearchParams(window.location.search).get('pos') === String(i)",
                               arg=index)
        refs = page.evaluate(CLIP_REFERENCES)
        assert refs["clips"], "the image subplot has no clip path"
        stale = [c for c in refs["clips"] if c.startswith("url(") and "#" in c
                 and c[4:].strip("'\"").split("#")[0] not in ("", refs["page"])]
        assert not stale, f"clip paths point at another address than {refs['page']}: {stale[:2]}"


def test_play_stays_in_sight_while_one_scrolls_down_to_watch(page) -> None:
    # with the figure scrolled up to its slider, Play (above the figure) went off screen
    page.evaluate("() => window.scrollBy(0, document.querySelector('#denoise-plot').getBoundingClientRect().top + 150)")
    page.wait_for_timeout(200)
    box = page.evaluate("() => { const b = document.querySelector('#play-btn').getBoundingClientRect();"
                        " const p = document.querySelector('#denoise-plot').getBoundingClientRect();"
                        " return [b.top, b.bottom, p.top, window.innerHeight]; }")
    assert box[2] < -100 and 0 <= box[0] and box[1] <= box[3], box  # figure's top scrolled away, Play in sight
    page.evaluate("() => window.scrollTo(0, 0)")


def test_play_advances_the_step_and_stops_at_the_end(page) -> None:
    page.evaluate(SCRUB, ["denoise-plot", 0])
    page.locator("#play-btn").click()
    seen = []
    for _ in range(6):
        page.wait_for_timeout(500)
        seen.append(page.evaluate(ACTIVE))
    assert seen == sorted(seen) and seen[-1] > seen[0] and seen[-1] > 0  # it moves forward on its own
    shot(page, "10_playing", "#denoise-plot")
    page.wait_for_function(f"() => ({ACTIVE})() === 20", timeout=TIMEOUT_MS)
    page.wait_for_timeout(1500)
    assert page.evaluate(ACTIVE) == 20 and "Play" in page.locator("#play-btn").inner_text()  # stopped at the end
    state = page.evaluate(PLOT_STATE, "denoise-plot")
    assert state["captions"] == ["<b>Final detections (after ensemble and NMS)</b>"]


GLIDE_SAMPLES = """async (ms) => {
  const gd = document.querySelector('#denoise-plot .js-plotly-plot');
  const slots = new Set(gd.layout.sliders[0].steps[0].args[1]);
  const out = [], t0 = performance.now();
  while (performance.now() - t0 < ms) {
    await new Promise(r => requestAnimationFrame(r));
    const svg = gd.querySelector('svg.dd-tween');
    if (!svg || svg.style.display === 'none') continue;
    const hidden = [...gd.querySelectorAll('.scatterlayer .trace')].filter(g => g.__data__ && g.__data__[0]
      && slots.has(g.__data__[0].trace.index)).every(g => g.style.opacity === '0');
    const centres = [...svg.querySelectorAll('rect')].map(r => +r.getAttribute('x') + +r.getAttribute('width') / 2);
    out.push([svg.lastChild.textContent, centres, hidden, performance.now() - t0]);
  }
  return out;
}"""


def play_and_sample(page, sampler: str, ms: int) -> list:
    """Press Play with ``sampler`` (a page function of the sampling time) already sampling every frame: started after
    the press, a slow page could miss the first glide."""
    page.evaluate(f"(ms) => {{ window.__glideSamples = ({sampler})(ms); }}", ms)
    page.locator("#play-btn").click()
    return page.evaluate("() => window.__glideSamples")


def test_play_glides_the_boxes_through_the_head_stages_and_pauses(page) -> None:
    page.evaluate(SCRUB, ["denoise-plot", 0])
    tween = page.evaluate("() => document.querySelector('#denoise-plot .js-plotly-plot').layout.meta.tween")
    assert tween is not None and tween["K"] >= 2  # this checkpoint's head has several stages; all are carried
    samples = play_and_sample(page, GLIDE_SAMPLES, 3500)
    page.locator("#play-btn").click()  # pause: stops at the next position
    page.wait_for_function("() => !window.__dd.running", timeout=TIMEOUT_MS)
    assert "Play" in page.locator("#play-btn").inner_text()
    stopped = page.evaluate(ACTIVE)
    page.wait_for_timeout(1500)
    assert page.evaluate(ACTIVE) == stopped  # paused means paused
    captions = list(dict.fromkeys(c for c, *_ in samples))
    # step 1 plays x_t through every carried head stage, then the DDIM update to step 2's noisy boxes
    assert [f"Step 1/10 · the head refines the boxes: stage {k} of {tween['stage']}"
            for k in tween["stages"]] == captions[:tween["K"]]
    # each stage's caption stays long enough to read (it went by in 150 ms at 4 stages)
    # (from the first frame showing stage 2's caption to the first frame showing stage 3's)
    starts = {c: t for c, _, _, t in reversed(samples)}
    second, third = (starts[captions[1]], starts[captions[2]]) if tween["K"] >= 3 else (starts[captions[0]],
                                                                                          starts[captions[1]])
    assert third - second >= 225, (second, third)
    assert any("DDIM update" in c for c in captions)
    assert all(hidden for _, _, hidden, _ in samples)  # the slider's own boxes make way while the boxes glide
    # smooth: within one glide a box passes through in-between places (several distinct positions), not one jump
    update = [centres for c, centres, _, _ in samples if "DDIM update" in c]
    assert len(update) >= 3
    moving = [j for j in range(tween["N"]) if len({round(u[j], 1) for u in update}) >= 3]
    assert len(moving) >= tween["N"] // 2
    shot(page, "10_paused", "#denoise-plot")


def test_a_slider_press_while_playing_stops_play_where_pressed(page) -> None:
    """Pressing the slider while Play runs must win: Play stops at once, the slider stays where pressed (the
    fresh-user trial saw a press at the left end 'do nothing': Play carried on and moved the slider away)."""
    page.evaluate(SCRUB, ["denoise-plot", 4])
    page.locator("#play-btn").click()
    page.wait_for_function(f"() => ({ACTIVE})() >= 5", timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)  # mid-glide
    rail = page.evaluate("() => { const r = document.querySelector('#denoise-plot .slider-rail-rect')"
                         ".getBoundingClientRect(); return [r.x, r.y + r.height / 2]; }")
    page.mouse.click(rail[0] + 1, rail[1])  # the far-left end of the rail: position 0
    page.wait_for_function("() => !window.__dd.running", timeout=TIMEOUT_MS)
    page.wait_for_timeout(1500)
    assert page.evaluate(ACTIVE) == 0
    assert "Play" in page.locator("#play-btn").inner_text()
    state = page.evaluate(PLOT_STATE, "denoise-plot")
    assert state["captions"][0].startswith("<b>Step 1/10 · boxes fed in")
    svg_shown = page.evaluate("() => { const s = document.querySelector('#denoise-plot svg.dd-tween');"
                              " return !!s && s.style.display !== 'none'; }")
    assert not svg_shown  # the glide layer is gone and the slider's own boxes are back


def test_play_pressed_before_the_view_is_drawn_starts_when_it_is(page) -> None:
    """A press while the first view is still on its way did nothing; now Play starts once the view is drawn."""
    page.evaluate(SCRUB, ["denoise-plot", 0])
    # no view yet: take the plot out of Play's sight, as before the first figure arrives
    page.evaluate("() => document.querySelector('#denoise-plot .js-plotly-plot')"
                  ".classList.replace('js-plotly-plot', 'dd-away')")
    page.locator("#play-btn").click()
    assert "Loading" in page.locator("#play-btn").inner_text()
    assert not page.evaluate("() => !!window.__dd.running")
    # the view is drawn: Play starts by itself
    page.evaluate("""() => { const gd = document.querySelector('#denoise-plot .dd-away');
      gd.classList.replace('dd-away', 'js-plotly-plot'); gd.emit('plotly_afterplot'); }""")
    page.wait_for_function("() => window.__dd.running === true", timeout=TIMEOUT_MS)
    assert "Pause" in page.locator("#play-btn").inner_text()
    page.locator("#play-btn").click()
    page.wait_for_function("() => !window.__dd.running", timeout=TIMEOUT_MS)
    assert "Play" in page.locator("#play-btn").inner_text()


def test_a_long_run_shows_progress_per_ddim_step(page) -> None:
    steps = page.locator("#steps input[type=number]")
    steps.fill("20")
    steps.press("Enter")
    page.locator("#seed input[type=number]").fill("77")  # not a cached run
    page.locator("#detect-btn").click()
    page.wait_for_function("() => [...document.querySelectorAll('.progress-level')].some(e => "
                           "/DDIM step \\d+\\/20/.test(e.textContent))")
    # the progress covers the whole status line, opaque: drawn over the greyed old text, both were unreadable
    cover = page.evaluate("""() => { const block = document.querySelector('#status');
      const wrap = block.querySelector(':scope > .wrap');
      const a = block.getBoundingClientRect(), b = wrap.getBoundingClientRect(), style = getComputedStyle(wrap);
      return [Math.round(b.top - a.top), Math.round(a.bottom - b.bottom), style.opacity, style.backgroundColor]; }""")
    assert cover[0] <= 0 and cover[1] <= 0 and cover[2] == "1" and "rgba" not in cover[3], cover
    # one time left only, the run's own: Gradio's timer ("processing | 2.1/0.7s") is hidden beside it
    shown = page.evaluate("""() => [...document.querySelectorAll('#status .progress-text, #status .progress-level')]
      .filter(e => e.offsetParent !== null).map(e => e.className.split(' ')[0])""")
    assert shown == ["progress-level"], shown
    # and only there: the previous figure stays in view until the new one comes (it was blanked for the whole run)
    assert page.evaluate("() => !!document.querySelector('#denoise-plot .js-plotly-plot') && !document.querySelector("
                         "'#denoise-plot .progress-level, #denoise-plot .wrap.full:not(.hide)')")
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('20 DDIM step')")
    steps.fill("10")
    steps.press("Enter")
    page.locator("#seed input[type=number]").fill("0")
    page.locator("#detect-btn").click()
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('10 DDIM step')")


def test_a_display_change_keeps_the_slider_position(page) -> None:
    page.evaluate(SCRUB, ["denoise-plot", 7])
    page.evaluate("() => { document.querySelector('#denoise-plot .js-plotly-plot').data[0].__old = true; }")
    page.locator("#show-scores input").click()
    # the server's redraw has arrived (new trace objects) and it opened where the slider was
    page.wait_for_function("() => !document.querySelector('#denoise-plot .js-plotly-plot').data[0].__old")
    assert page.evaluate(ACTIVE) == 7
    assert "score ≥" in page.locator("#status").inner_text()
    page.locator("#show-scores input").click()


def test_arrow_keys_on_display_sliders_redraw_the_view(page) -> None:
    """Head stage and Score threshold moved with the keyboard (no pointer release) redraw what they control."""
    page.evaluate(SCRUB, ["denoise-plot", 5])  # step 3's prediction, at the shown stage
    stage = page.locator("#stage input[type=range]")
    last = int(stage.input_value())
    assert last >= 2 and page.evaluate(PLOT_STATE, "denoise-plot")["captions"][0].startswith(
        f"<b>Step 3/10 · stage {last} prediction")
    stage.focus()
    for _ in range(last - 1):
        stage.press("ArrowLeft")
    page.wait_for_function("() => (document.querySelector('#denoise-plot .js-plotly-plot').data"
                           ".find(t => t.name === 'caption' && t.visible === true) || {text: ['']}).text[0]"
                           ".startsWith('<b>Step 3/10 · stage 1 prediction')", timeout=TIMEOUT_MS)
    assert page.evaluate(ACTIVE) == 5
    threshold = page.locator("#score-threshold input[type=range]")
    threshold.focus()
    threshold.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('score ≥ 0.35')",
                           timeout=TIMEOUT_MS)
    threshold.press("ArrowLeft")
    stage.focus()
    for _ in range(last - 1):
        stage.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('score ≥ 0.30')",
                           timeout=TIMEOUT_MS)
    page.wait_for_function(f"() => (document.querySelector('#denoise-plot .js-plotly-plot').data"
                           f".find(t => t.name === 'caption' && t.visible === true) || {{text: ['']}}).text[0]"
                           f".startsWith('<b>Step 3/10 · stage {last} prediction')", timeout=TIMEOUT_MS)


LEGEND = """() => [...document.querySelectorAll('#denoise-legend .layer-toggle')].map(e => e.textContent)"""
PLOTLY_LEGEND = """(id) => [...document.querySelectorAll(`#${id} .legend .traces`)].map(e => e.textContent)"""
GROUP_VISIBILITY = """(name) => {
  const gd = document.querySelector('#denoise-plot .js-plotly-plot');
  const group = gd.layout.meta.layers.find(l => l.name === name).group;
  const traces = gd.data.filter(t => t.legendgroup === group);
  return traces.length ? traces.map(t => t.visible) : [null];
}"""


def test_every_legend_entry_hides_its_layer_and_it_stays_hidden_while_scrubbing(page) -> None:
    # The denoising view's legend is HTML above the plot (Plotly's own legend was redrawn on every slider step).
    entries = page.evaluate(LEGEND)
    assert {"predicted boxes (class colour)", "noise boxes x_t (fed in)", "ground truth"} <= set(entries)
    assert page.evaluate("() => document.querySelector('#denoise-plot .js-plotly-plot').querySelector('.legend')") \
        is None
    keys = page.locator("#denoise-legend .class-key").inner_text()
    assert "any class, score < 0.2 (faint grey)" in keys
    shot(page, "11_legend", "#views")
    for i, name in enumerate(entries):
        toggle = page.locator("#denoise-legend .layer-toggle").nth(i)
        toggle.click()
        page.wait_for_function(f"(a) => ({GROUP_VISIBILITY})(a).every(v => v === 'legendonly')", arg=name)
        assert toggle.get_attribute("aria-pressed") == "false"
        page.evaluate(SCRUB, ["denoise-plot", 3])
        assert all(v == "legendonly" for v in page.evaluate(GROUP_VISIBILITY, name)), name
        if name == "centre tracks":
            shot(page, "11_tracks_hidden", "#denoise-plot")
        toggle.click()
        page.wait_for_function(f"(a) => ({GROUP_VISIBILITY})(a).every(v => v !== 'legendonly')", arg=name)
        assert toggle.get_attribute("aria-pressed") == "true"
    page.evaluate(SCRUB, ["denoise-plot", 20])


GLIDE_OPACITIES = """async (ms) => {
  const gd = document.querySelector('#denoise-plot .js-plotly-plot');
  const seen = [], t0 = performance.now();
  while (performance.now() - t0 < ms) {
    await new Promise(r => requestAnimationFrame(r));
    const svg = gd.querySelector('svg.dd-tween');
    if (svg && svg.style.display !== 'none')
      seen.push([...svg.querySelectorAll('rect')].map(r => +r.getAttribute('stroke-opacity')));
  }
  return seen;
}"""


def test_play_keeps_hidden_layers_hidden_while_the_boxes_glide(page) -> None:
    buttons = {g: page.locator(f"#denoise-legend .layer-toggle[data-group='{g}']") for g in ("noise", "boxes")}
    page.evaluate(SCRUB, ["denoise-plot", 0])
    shown = play_and_sample(page, GLIDE_OPACITIES, 1200)
    page.locator("#play-btn").click()
    page.wait_for_function("() => !window.__dd.running", timeout=TIMEOUT_MS)
    assert shown and max(max(frame) for frame in shown) > 0  # with every layer on, the gliding boxes are seen
    for button in buttons.values():
        button.click()
    try:
        page.evaluate(SCRUB, ["denoise-plot", 0])
        frames = play_and_sample(page, GLIDE_OPACITIES, 2500)  # x_t -> the stages -> the DDIM update
        page.locator("#play-btn").click()
        page.wait_for_function("() => !window.__dd.running", timeout=TIMEOUT_MS)
        assert len(frames) >= 10
        assert all(v == 0 for frame in frames for v in frame)  # noise and predictions hidden: nothing glides
    finally:
        for button in buttons.values():
            button.click()
    assert all(b.get_attribute("aria-pressed") == "true" for b in buttons.values())
    page.evaluate(SCRUB, ["denoise-plot", 20])


def test_play_hides_boxes_drawn_from_heatmap_peaks_with_their_layer(page) -> None:
    """Boxes drawn from heatmap peaks glide unseen while their layer is hidden, and the plain noise boxes still show
    (the glide counted them as noise before). The test checkpoint's random heatmap has no peaks, so every third slot
    of step 1 is marked as drawn from one in the figure's glide data."""
    peaks = page.evaluate("""() => { const gd = document.querySelector('#denoise-plot .js-plotly-plot');
      const tw = gd.layout.meta.tween, marks = new Uint8Array(tw.S * tw.N);
      for (let j = 0; j < tw.N; j += 3) marks[j] = 1;
      window.__heatmapBefore = tw.heatmap;
      tw.heatmap = btoa(String.fromCharCode(...marks));
      delete gd.__ddTween;  // the page decodes the glide data once per figure
      window.__dd.hidden.add('heatmap');
      return [...marks.slice(0, tw.N)]; }""")
    try:
        page.evaluate(SCRUB, ["denoise-plot", 0])
        frames = play_and_sample(page, GLIDE_OPACITIES, 1200)
        page.locator("#play-btn").click()
        page.wait_for_function("() => !window.__dd.running", timeout=TIMEOUT_MS)
    finally:
        page.evaluate("""() => { const gd = document.querySelector('#denoise-plot .js-plotly-plot');
          gd.layout.meta.tween.heatmap = window.__heatmapBefore; delete gd.__ddTween;
          window.__dd.hidden.delete('heatmap'); }""")
    fed_in = [f for f in frames if all(v == 0.55 for v, peak in zip(f, peaks) if not peak)]  # x_t still shown
    assert fed_in, frames[:3]
    assert all(v == 0 for f in fed_in for v, peak in zip(f, peaks) if peak)
    page.evaluate(SCRUB, ["denoise-plot", 20])


def set_slider(page, element_id: str, fraction: float) -> None:
    """Click a Gradio slider's range at ``fraction`` of its length (a release, as a user's click is)."""
    rail = page.locator(f"#{element_id} input[type=range]")
    rail.scroll_into_view_if_needed()
    box = rail.bounding_box()
    page.mouse.click(box["x"] + 2 + (box["width"] - 4) * fraction, box["y"] + box["height"] / 2)


LABEL_BOXES = """(id) => [...document.querySelectorAll(`#${id} .textpoint text`)]
  .filter(e => e.textContent.trim() && e.style.display !== 'none').map(e => { const r = e.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom, e.textContent]; })"""


def test_labels_in_the_final_view_do_not_overlap(page) -> None:
    set_slider(page, "score-threshold", 0.0)
    page.wait_for_function(f"() => ({LABEL_BOXES})('denoise-plot').length >= 2")
    labels = page.evaluate(LABEL_BOXES, "denoise-plot")
    boxes = page.evaluate("() => document.querySelector('#denoise-plot .js-plotly-plot').data"
                          ".filter(t => t.name === 'boxes' && t.visible === true)[0].customdata.length")
    assert len(labels) < boxes  # crowded: not every box gets a label
    for a in range(len(labels)):
        for b in range(a + 1, len(labels)):
            la, lb = labels[a], labels[b]
            overlap_x = min(la[2], lb[2]) - max(la[0], lb[0])
            overlap_y = min(la[3], lb[3]) - max(la[1], lb[1])
            assert overlap_x <= 1 or overlap_y <= 1, (la[4], lb[4])
    # each label has a white outline under its text (Plotly's text-shadow is not drawn on SVG text in Chromium)
    outline = page.evaluate("() => [...document.querySelectorAll('#denoise-plot .textpoint text')].map(e => {"
                            " const cs = getComputedStyle(e); return [cs.stroke, cs.paintOrder, cs.strokeWidth]; })")
    assert outline and all(o == ["rgb(255, 255, 255)", "stroke", "3px"] for o in outline), outline[:3]
    shot(page, "12_labels_threshold_0", "#denoise-plot")
    set_slider(page, "score-threshold", 0.3)


def test_the_address_bar_is_a_link_that_restores_the_view(page, server) -> None:
    # display settings and hidden layers travel in the link too
    set_slider(page, "line-width", 0.8)  # a release: the server redraws, then the URL follows
    page.wait_for_function("() => /lw=(4.5|5|5.5)&/.test(window.location.search)")
    page.locator("#denoise-legend .layer-toggle", has_text="noise boxes").click()
    page.wait_for_function("() => window.location.search.includes('hide=noise')")
    page.evaluate(SCRUB, ["denoise-plot", 5])
    page.wait_for_function("() => window.location.search.includes('pos=5')")
    url = page.evaluate("() => window.location.href")  # (Playwright's page.url lags behind replaceState)
    example = re.search(r"example=(scene_\d+)\.jpg", url).group(1)  # the example on the page now
    assert "steps=10" in url and "eta=0" in url and "labels=1" in url and "stage=" in url
    other = page.context.browser.new_page(viewport={"width": 1500, "height": 1000})
    other.set_default_timeout(TIMEOUT_MS)
    other.goto(url)
    other.wait_for_function("(name) => (document.querySelector('#status') || {innerText: ''}).innerText"
                            ".includes(name)", arg=example)
    other.wait_for_function("() => { const gd = document.querySelector('#denoise-plot .js-plotly-plot');"
                            " return gd && gd.layout && gd.layout.sliders && gd.layout.sliders[0].active === 5; }")
    assert other.locator("#steps input[type=number]").input_value() == "10"
    assert other.locator("#line-width input[type=number]").input_value() == page.locator(
        "#line-width input[type=number]").input_value()
    other.wait_for_function("() => { const gd = document.querySelector('#denoise-plot .js-plotly-plot');"
                            " const t = gd.data.filter(t => t.legendgroup === 'noise');"
                            " return t.length && t.every(t => t.visible === 'legendonly'); }")
    assert other.locator("#denoise-legend .layer-toggle", has_text="noise boxes").get_attribute(
        "aria-pressed") == "false"
    shot(other, "13_link_restored", "#denoise-plot")
    other.close()
    # the presets' settings reach the address too (it kept the previous run's)
    page.locator("#preset-paper").click()
    page.wait_for_function("() => /steps=4&eta=1&renewal=1&proposals=\\d+&/.test(window.location.search)")
    page.locator("#preset-teaching").click()
    page.wait_for_function("() => /steps=10&eta=0&renewal=0&proposals=50&/.test(window.location.search)")
    # back to the defaults for the tests after this one
    page.locator("#denoise-legend .layer-toggle", has_text="noise boxes").click()
    set_slider(page, "line-width", (2 - 0.5) / 5.5)
    page.wait_for_function("() => window.location.search.includes('lw=2&') && !window.location.search.includes('hide')")


def test_convergence_view(page) -> None:
    page.get_by_role("tab", name="Convergence").click()
    page.wait_for_function("() => { const gd = document.querySelector('#convergence-plot .js-plotly-plot');"
                           " return gd && gd.layout && gd.layout.meta && gd.layout.meta.mean_xt.length === 10; }")
    entries = page.evaluate(PLOTLY_LEGEND, "convergence-plot")
    assert "noisy box x_t (each step)" in entries and "final box (class colour)" in entries
    shot(page, "14_convergence", "#convergence-plot")
    page.get_by_role("tab", name="Denoising").click()


def test_phone_size_run(page, server) -> None:
    phone = page.context.browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    small = phone.new_page()
    small.set_default_timeout(TIMEOUT_MS)
    small.goto(server.local_url)
    small.wait_for_function("() => (document.querySelector('#status') || {innerText: ''}).innerText"
                            ".includes('detection(s)')")
    # the walkthrough does not cover the page; Detect comes before the result, and the result fits the screen
    assert not small.evaluate("() => document.querySelector('#walkthrough-sidebar').classList.contains('open')")
    detect, plot = small.locator("#detect-btn").bounding_box(), small.locator("#denoise-plot").bounding_box()
    assert detect["y"] < plot["y"] < detect["y"] + 900 and plot["x"] + plot["width"] <= 390
    # the presets follow the result on a phone, with the Sampler they set; the Play row's caption stays short
    presets, sampler = small.locator("#preset-teaching").bounding_box(), small.get_by_role("button", name="Sampler").bounding_box()
    assert plot["y"] + plot["height"] < presets["y"] < sampler["y"], (plot, presets, sampler)
    assert small.locator("#play-row").bounding_box()["height"] <= 80
    sidebar = small.locator("#walkthrough").bounding_box()
    assert sidebar is None or sidebar["x"] >= 380  # off screen to the right
    # the image's label badge ends before the component's buttons, with its text whole (it ran under them)
    badge = small.evaluate("""() => { const b = document.querySelector('#input-image [data-testid=block-label]');
      const icons = document.querySelector('#input-image .icon-button-wrapper');
      return [b.getBoundingClientRect().right, icons.getBoundingClientRect().left, b.scrollWidth, b.clientWidth]; }""")
    assert badge[0] <= badge[1] and badge[2] <= badge[3], badge
    shot(small, "15_phone_first_view")
    # the walkthrough button opens the walkthrough (the sidebar's own toggle is a small tab at the screen's edge)
    small.locator("#walkthrough-open").tap()
    small.wait_for_function("() => document.querySelector('#walkthrough-sidebar').classList.contains('open')")
    small.wait_for_timeout(600)
    opened = small.locator("#walkthrough").bounding_box()
    assert opened["x"] >= 0 and opened["x"] + opened["width"] <= 390, opened
    shot(small, "15_phone_walkthrough")
    small.locator("#walkthrough-sidebar .toggle-button").tap()
    small.wait_for_function("() => !document.querySelector('#walkthrough-sidebar').classList.contains('open')")
    small.locator("#detect-btn").tap()
    small.wait_for_function("() => document.querySelector('#status').innerText.includes('cached result')")
    small.locator("#denoise-plot").scroll_into_view_if_needed()
    small.wait_for_timeout(1500)
    assert small.locator("#denoise-plot").bounding_box()["width"] <= 390
    small.screenshot(path=str(OUTPUT_DIR / "browser_15_phone_result.png"))
    # labels placed for a laptop-wide image ran into each other on the phone's narrower one: the page keeps the best
    set_slider(small, "score-threshold", 0.0)  # (the test checkpoint scores low: every box gets a label then)
    small.wait_for_function(f"() => ({LABEL_BOXES})('denoise-plot').length >= 3")
    small.wait_for_timeout(500)
    labels = small.evaluate(LABEL_BOXES, "denoise-plot")
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a[4], b[4])
    assert small.evaluate("() => [...document.querySelectorAll('#denoise-plot .textpoint text')]"
                          ".some(e => e.style.display === 'none')")  # some were dropped at this width
    set_slider(small, "score-threshold", 0.3)
    small.wait_for_function("() => document.querySelector('#status').innerText.includes('score ≥ 0.30')")
    small.wait_for_timeout(500)
    small.locator("#denoise-plot").scroll_into_view_if_needed()
    # the slider's last position keeps its label "final" on the narrow rail (Plotly labels every k-th position)
    small.wait_for_function("() => [...document.querySelectorAll('#denoise-plot .slider-label')]"
                            ".some(e => e.textContent === 'final')")
    # every view's tab is in sight on the phone (none behind a "more" menu) and inside the screen
    tabs = small.evaluate("() => [...document.querySelectorAll('#views [role=tab]')].map(b => {"
                          " const r = b.getBoundingClientRect(); return [b.innerText, r.width > 0, r.right]; })")
    assert [t[0] for t in tabs] == ["Denoising", "Convergence", "Heatmap", "Target", "Results", "A/B", "Training"]
    assert all(visible and right <= 390 for _, visible, right in tabs), tabs
    assert not small.locator("#views button[aria-label='More tabs']").is_visible()
    # Plotly's tool bar (always shown without hover) would cover the figure captions
    assert not small.locator("#denoise-plot .modebar").is_visible()
    # the heatmap view's three panels stack at the full width, their titles clear of each other
    small.get_by_role("tab", name="Heatmap").tap()
    small.wait_for_function("() => { const gd = document.querySelector('#heatmap-plot .js-plotly-plot');"
                            " return gd && gd._fullLayout && gd.layout.legend && gd.layout.legend.orientation === 'h'"
                            " && gd._fullLayout.xaxis2; }")
    small.wait_for_timeout(1000)
    layout = small.evaluate("""() => { const gd = document.querySelector('#heatmap-plot .js-plotly-plot');
      const fl = gd._fullLayout, boxes = [...gd.querySelectorAll('.annotation-text')].map(e => {
        const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; });
      const panels = ['xaxis', 'xaxis2', 'xaxis3'].filter(k => fl[k]).map(k => fl[k]._length);
      const tops = ['yaxis', 'yaxis2', 'yaxis3'].filter(k => fl[k]).map(k => fl[k]._offset);
      return {boxes, panels, tops, width: gd.getBoundingClientRect().width}; }""")
    assert layout["width"] <= 390 and all(w >= 0.9 * layout["width"] - 20 for w in layout["panels"])
    assert layout["tops"] == sorted(layout["tops"]) and len(set(layout["tops"])) == len(layout["tops"])  # stacked
    boxes = layout["boxes"]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)  # titles do not overlap
    small.locator("#heatmap-plot").screenshot(path=str(OUTPUT_DIR / "browser_16_phone_heatmap.png"))
    # overlaid on the image, the figure fits the image (at the laptop's height it left ~600 px empty under it) and the
    # layer buttons leave the title whole
    small.locator("#heat-mode").get_by_text("overlay on image").tap()
    small.wait_for_function("() => { const gd = document.querySelector('#heatmap-plot .js-plotly-plot');"
                            " return gd && gd.layout.updatemenus && gd.layout.legend"
                            " && gd.layout.legend.orientation === 'h'; }")
    small.wait_for_timeout(800)
    overlay = small.evaluate("""() => { const gd = document.querySelector('#heatmap-plot .js-plotly-plot');
      const fl = gd._fullLayout, box = (e) => { const r = e.getBoundingClientRect();
        return [r.left, r.top, r.right, r.bottom]; };
      return {plot: fl.yaxis._length, image: fl.xaxis._length * window.__dd.aspect(gd.layout),
              blank: fl._size.h - fl.yaxis._length,
              title: box(gd.querySelector('.annotation-text')), buttons: box(gd.querySelector('.updatemenu-container')),
              width: gd.getBoundingClientRect().width}; }""")
    assert abs(overlay["plot"] - overlay["image"]) < 40, overlay
    assert overlay["blank"] < 12, overlay  # no blank plot area beside the image (42 px with the colour bar's margin)
    title, buttons = overlay["title"], overlay["buttons"]
    assert title[3] <= buttons[1] + 1 and title[2] <= overlay["width"], overlay  # above the buttons, whole
    small.locator("#heatmap-plot").screenshot(path=str(OUTPUT_DIR / "browser_16_phone_heatmap_overlay.png"))
    # the convergence view's image takes the full width and its IoU chart sits below it, not squeezed beside it
    small.get_by_role("tab", name="Convergence").tap()
    small.wait_for_function("() => { const gd = document.querySelector('#convergence-plot .js-plotly-plot');"
                            " return gd && gd.layout && gd.layout.legend && gd.layout.legend.orientation === 'h'; }")
    small.wait_for_timeout(500)
    fit = small.evaluate("""() => { const gd = document.querySelector('#convergence-plot .js-plotly-plot');
      const fl = gd._fullLayout;
      return {width: gd.getBoundingClientRect().width, image: fl.xaxis._length, chart: fl.xaxis2._length,
              imageBottom: fl.yaxis._offset + fl.yaxis._length, chartTop: fl.yaxis2._offset}; }""")
    assert fit["width"] <= 390 and fit["image"] >= 0.9 * fit["width"] - 20 and fit["chart"] >= 0.75 * fit["width"]
    assert fit["chartTop"] > fit["imageBottom"], fit  # stacked
    small.locator("#convergence-plot").screenshot(path=str(OUTPUT_DIR / "browser_17_phone_convergence.png"))
    # the target view (drawn while its tab was hidden): the image at the full width, the colour bar under it and
    # the profile chart right below, no tall gap between them
    small.get_by_role("tab", name="Target").tap()
    small.wait_for_timeout(1000)
    target = small.evaluate("""() => { const gd = document.querySelector('#target-plot .js-plotly-plot');
      const fl = gd._fullLayout, bar = gd.querySelector('.colorbar').getBoundingClientRect();
      const top = gd.getBoundingClientRect().top;
      return {width: gd.getBoundingClientRect().width, image: fl.xaxis._length,
              imageBottom: fl.yaxis._offset + fl.yaxis._length, imageHeight: fl.yaxis._length,
              barTop: bar.top - top, barBottom: bar.bottom - top, chartTop: fl.yaxis2._offset,
              titleTop: gd.querySelector('.gtitle').getBoundingClientRect().top - top}; }""")
    assert target["titleTop"] >= 0, target  # the title's first line whole (it began 3 px above the figure)
    assert target["width"] <= 390 and target["image"] >= target["width"] - 60, target  # the margins only
    assert abs(target["imageHeight"] - 0.75 * target["image"]) < 3, target  # the image fills its axes
    assert target["imageBottom"] <= target["barTop"] and target["barBottom"] <= target["chartTop"] <= \
        target["imageBottom"] + 100, target
    small.locator("#target-plot").screenshot(path=str(OUTPUT_DIR / "browser_18_phone_target.png"))
    # the two dropdowns side by side: each value ends before its arrow ("max over classe▾" ran under it)
    arrows = small.evaluate("""() => ['#target-class', '#profile-box'].map(id => {
      const input = document.querySelector(id + ' input'), icon = document.querySelector(id + ' .icon-wrap');
      const r = input.getBoundingClientRect(), pad = parseFloat(getComputedStyle(input).paddingRight);
      return [r.right - pad, icon.getBoundingClientRect().left]; })""")
    assert all(end <= left + 1 for end, left in arrows), arrows
    # the training view's panels stack, each legend clear of every panel's plot area; a run with the ten PROPS
    # classes, whose names at the desktop's slant ran into each other and past the left edge
    from diffdet.config import PROPS_CLASSES
    metrics = OUTPUT_DIR / "phone_metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in (
        {"iter": 0, "loss_total": 3.0, "loss_ce": 1.0}, {"iter": 100, "loss_total": 2.0, "loss_ce": 0.7},
        {"iter": 100, "eval": {"AP": 30.0, "AP50": 50.0, "per_class": {n: 30.0 for n in PROPS_CLASSES}}})))
    small.get_by_role("tab", name="Training").tap()
    small.locator("#metrics-upload input[type=file]").set_input_files(str(metrics))
    small.wait_for_function("() => document.querySelector('#training-summary').innerText.includes('phone_metrics')")
    small.wait_for_timeout(1000)
    training = small.evaluate("""() => { const gd = document.querySelector('#training-plot .js-plotly-plot');
      const fl = gd._fullLayout, top = gd.getBoundingClientRect().top, left = gd.getBoundingClientRect().left;
      const panels = ['', '2', '3'].map(k => [fl['xaxis' + k]._offset, fl['yaxis' + k]._offset,
        fl['xaxis' + k]._offset + fl['xaxis' + k]._length, fl['yaxis' + k]._offset + fl['yaxis' + k]._length]);
      const legends = [...gd.querySelectorAll('g.legend, g.legend2, g.legend3')].map(e => {
        const r = e.getBoundingClientRect();
        return [r.left - left, r.top - top, r.right - left, r.bottom - top]; });
      const titles = [...gd.querySelectorAll('.g-xtitle text, .g-x2title text, .g-x3title text')].map(e => {
        const r = e.getBoundingClientRect();
        return [r.left - left, r.top - top, r.right - left, r.bottom - top]; });
      return {width: gd.getBoundingClientRect().width, panels, legends, titles}; }""")
    assert len(training["legends"]) == 3 and training["titles"], training
    apart = lambda a, b: a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]  # noqa: E731
    for p in training["panels"]:
        assert p[2] - p[0] >= 0.75 * training["width"], training  # full width
        for g in training["legends"]:
            assert apart(g, p), (g, p)
    # nor over the axis titles ("iteration" sat under the loss legend's scroll bar) or each other
    for i, g in enumerate(training["legends"]):
        assert all(apart(g, t) for t in training["titles"]), (g, training["titles"])
        assert all(apart(g, h) for h in training["legends"][i + 1:]), training["legends"]
    ticks = small.evaluate("""() => { const gd = document.querySelector('#training-plot .js-plotly-plot');
      const left = gd.getBoundingClientRect().left;
      return [...gd.querySelectorAll('.xaxislayer-above .x3tick text')].map(e => { const r = e.getBoundingClientRect();
        return [r.left - left, r.top, r.right - left, r.bottom]; }); }""")
    assert len(ticks) == 10 and min(t[0] for t in ticks) >= 0, ticks  # the class names, none cut at the left
    for i, a in enumerate(ticks):
        for b in ticks[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)  # nor over each other
    small.locator("#training-plot").screenshot(path=str(OUTPUT_DIR / "browser_19_phone_training.png"))
    # the results view's legend sits right under the image (the room held for it left ~190 px empty)
    small.get_by_role("tab", name="Results").tap()
    small.wait_for_timeout(1000)
    gap = small.evaluate("""() => { const gd = document.querySelector('#results-plot .js-plotly-plot');
      const fl = gd._fullLayout, top = gd.getBoundingClientRect().top;
      const legendTop = gd.querySelector('.legend').getBoundingClientRect().top - top;
      return legendTop - (fl.yaxis._offset + fl.yaxis._length); }""")
    assert 0 <= gap <= 50, gap
    # A/B: the two runs stack at the full width, their captions whole and apart; the table's AP columns are on screen
    small.get_by_role("tab", name="A/B").tap()
    small.locator("#compare-btn").tap()
    small.wait_for_function("() => { const gd = document.querySelector('#compare-plot .js-plotly-plot');"
                            " return gd && gd.layout.legend && gd.layout.legend.orientation === 'h'; }",
                            timeout=TIMEOUT_MS)
    small.wait_for_timeout(800)
    ab = small.evaluate("""() => { const gd = document.querySelector('#compare-plot .js-plotly-plot');
      const fl = gd._fullLayout, boxes = [...gd.querySelectorAll('.textpoint text')]
        .filter(e => e.textContent.startsWith('A:') || e.textContent.startsWith('B:')).map(e => {
          const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; });
      const cells = [...document.querySelectorAll('#compare-summary tr')].map(r => r.lastElementChild
        .getBoundingClientRect().right);
      return {widths: [fl.xaxis._length, fl.xaxis2._length], tops: [fl.yaxis._offset, fl.yaxis2._offset],
              heights: [fl.yaxis._length, fl.yaxis2._length], boxes, cells,
              width: gd.getBoundingClientRect().width}; }""")
    assert all(w >= ab["width"] - 30 for w in ab["widths"]) and ab["tops"][1] >= ab["tops"][0] + ab["heights"][0], ab
    a, b = ab["boxes"]
    assert a[3] <= b[1] and a[2] <= 390 and b[2] <= 390, ab
    assert max(ab["cells"]) <= 390, ab
    # the header's words stay whole ("detecti/ons" broke mid-word) and the shared slider names its last position
    header = small.evaluate("""() => { const th = document.querySelectorAll('#compare-summary th')[2];
      const probe = document.createElement('span'); probe.textContent = 'detections';
      probe.style.font = getComputedStyle(th).font; probe.style.whiteSpace = 'nowrap'; th.append(probe);
      const word = probe.getBoundingClientRect().width; probe.remove();
      const pad = parseFloat(getComputedStyle(th).paddingLeft) + parseFloat(getComputedStyle(th).paddingRight);
      return [word, th.clientWidth - pad]; }""")
    assert header[0] <= header[1] + 0.5, header
    small.wait_for_function("() => [...document.querySelectorAll('#compare-plot .slider-label')]"
                            ".some(e => e.textContent === 'final')")
    small.locator("#compare-plot").screenshot(path=str(OUTPUT_DIR / "browser_20_phone_compare.png"))
    # Play's caption in the image fits the phone's image (at 13 px it ran past the right edge)
    small.get_by_role("tab", name="Denoising").tap()
    small.evaluate(SCRUB, ["denoise-plot", 0])
    small.locator("#play-btn").tap()
    small.wait_for_function("() => { const s = document.querySelector('#denoise-plot svg.dd-tween');"
                            " return s && s.style.display !== 'none' && s.lastChild.textContent.includes('stage'); }")
    fit = small.evaluate("""() => { const svg = document.querySelector('#denoise-plot svg.dd-tween');
      return [svg.lastChild.getComputedTextLength(), +svg.getAttribute('width')]; }""")
    small.locator("#play-btn").tap()
    small.wait_for_function("() => !window.__dd.running", timeout=TIMEOUT_MS)
    assert fit[0] <= fit[1] - 4, fit
    phone.close()


TARGET_STATE = """() => {
  const gd = document.querySelector('#target-plot .js-plotly-plot');
  const f = (name) => gd._fullData.find(t => t.name === name);
  const heat = f('target'), circles = f('gaussian radius'), profile = f('profile'), centres = f('centres');
  const num = (a) => Array.from(a, v => v === null || Number.isNaN(v) ? null : +v);
  return {z: Array.from(heat.z, row => Array.from(row)), cx: num(circles.x), cy: num(circles.y),
          profile: profile ? num(profile.y) : null, title: gd._fullLayout.title.text,
          shapes: (gd._fullLayout.shapes || []).map(s => [s.x0, s.x1]), rows: centres.customdata};
}"""

FRAMES_READY = """(slider) => { const gd = document.querySelector('#target-plot .js-plotly-plot');
  return !!(gd && gd.__ddFrames && gd.__ddFrames.z[slider]); }"""

WRAP_REACT = """() => { const P = window.Plotly, react = P.react; window.__given = [];
  P.react = function (gd, ...rest) { window.__given.push([gd, gd._fullLayout]); return react.call(this, gd, ...rest); };
  window.__unwrap = () => { P.react = react; }; }"""


def _same_target(a: dict, b: dict) -> None:
    assert a["title"] == b["title"]
    assert np.array_equal(np.array(a["z"]), np.array(b["z"]))
    for key in ("cx", "cy", "profile"):
        left, right = (np.array([np.nan if v is None else v for v in x[key] or []], float) for x in (a, b))
        assert left.shape == right.shape and np.allclose(left, right, atol=1e-3, equal_nan=True), key
    assert np.allclose(np.array(a["shapes"], float), np.array(b["shapes"], float), atol=1e-3)
    assert np.allclose([r[1:3] for r in a["rows"]], [r[1:3] for r in b["rows"]], atol=1e-4)  # radius in the hover


def test_rho_slider_resynthesises_the_target(page) -> None:
    """Opening the tab brings the figure with a frame per rho (and min_radius) position: a rho move is drawn by the
    page (no figure from the server), and what it draws is what the server draws for that rho."""
    page.get_by_role("tab", name="Target").click()
    page.wait_for_function(f"() => ({TARGET_Z})() !== null")
    page.wait_for_function(FRAMES_READY, arg="rho")  # the frames are inflated
    before = page.evaluate(TARGET_STATE)
    shot(page, "04_target_before", "#target-plot")
    rho = page.locator("#rho input[type=range]")
    rho.scroll_into_view_if_needed()
    box = rho.bounding_box()
    page.evaluate(WRAP_REACT)
    try:
        page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
        rho_value = float(page.locator("#rho input[type=number]").input_value())
        assert rho_value > 1.0
        # The redrawn figure is the one for the new rho: its title states it, and the image is still under the map.
        page.wait_for_function("(v) => document.querySelector('#target-plot .js-plotly-plot').layout.title.text"
                               ".includes(`${v} · min(w, h)`)", arg=f"{rho_value:g}")
        page.wait_for_timeout(500)  # a figure from the server would have come by now
        assert page.evaluate("() => window.__given.length") == 0  # drawn by the page
    finally:
        page.evaluate("() => window.__unwrap()")
    drawn = page.evaluate(TARGET_STATE)
    assert drawn["z"] != before["z"] and drawn["cx"] != before["cx"]
    assert page.evaluate("() => document.querySelector('#target-plot .js-plotly-plot').data[0].type") == "image"
    shot(page, "04_target_after_rho", "#target-plot")
    # The server's figure for the same rho: with the page's frames off, step away and back.
    page.evaluate("() => { window.__dd.pageFrame = window.__dd.applyFrame; window.__dd.applyFrame = () => false; }")
    try:
        rho.focus()
        for key, value in (("ArrowLeft", rho_value - 0.05), ("ArrowRight", rho_value)):
            page.keyboard.press(key)
            page.wait_for_function("(v) => document.querySelector('#target-plot .js-plotly-plot').layout.title.text"
                                   ".includes(`${v} · min(w, h)`)", arg=f"{round(value, 2):g}")
    finally:
        page.evaluate("() => { window.__dd.applyFrame = window.__dd.pageFrame; }")
    _same_target(drawn, page.evaluate(TARGET_STATE))
    # on a laptop screen the sliders and the whole profile chart they move are in sight together (the sliders were
    # above the ~780 px map, the profile below it)
    page.set_viewport_size({"width": 1440, "height": 900})
    try:
        page.locator("#rho").scroll_into_view_if_needed()
        page.evaluate("() => document.querySelector('#rho').scrollIntoView({block: 'end'})")
        span = page.evaluate("""() => { const gd = document.querySelector('#target-plot .js-plotly-plot');
          const top = gd.getBoundingClientRect().top, y2 = gd._fullLayout.yaxis2;
          const sliders = ['#rho', '#min-radius'].map(s => document.querySelector(s).getBoundingClientRect());
          return [top + y2._offset, top + y2._offset + y2._length, Math.min(...sliders.map(r => r.top)),
                  Math.max(...sliders.map(r => r.bottom)), window.innerHeight]; }""")
        assert -1 <= min(span[:4]) and max(span[:4]) <= span[4] + 1, span  # sub-pixel scroll positions
    finally:
        page.set_viewport_size({"width": 1500, "height": 1000})


def test_min_radius_after_rho_comes_from_the_server_once_then_from_the_page(page) -> None:
    """After rho moved, the figure's min_radius frames (made at the old rho) are not used: the first min_radius move
    is drawn by the server, once, and brings that slider's frames; the next one is drawn by the page."""
    page.get_by_role("tab", name="Heatmap").click()
    page.get_by_role("tab", name="Target").click()  # opened again: a figure with both sliders' frames
    page.wait_for_function(FRAMES_READY, arg="rho")
    page.wait_for_function(FRAMES_READY, arg="min_radius")
    page.evaluate("""() => { const dd = window.__dd, apply = dd.applyFrame; window.__frameCalls = [];
      dd.applyFrame = (gd, slider, value) => { const out = apply(gd, slider, value);
        window.__frameCalls.push([slider, out]); return out; }; window.__frameApply = apply; }""")
    rho = page.locator("#rho input[type=range]")
    rho.focus()
    rho.press("ArrowRight")  # drawn by the page
    slider = page.locator("#min-radius input[type=range]")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    title = ("(v) => document.querySelector('#target-plot .js-plotly-plot').layout.title.text"
             ".includes(`r = max(${v}, `)")
    page.evaluate(WRAP_REACT)
    try:
        page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
        value = float(page.locator("#min-radius input[type=number]").input_value())
        page.wait_for_function(title, arg=f"{value:g}")
        # Drawn once: the plot Gradio removes for the new figure is not drawn again first (that doubled the time).
        drawn = page.evaluate("""() => new Promise(r => setTimeout(() =>
          r(window.__given.map(([gd, before]) => [gd.isConnected, gd._fullLayout !== before])), 300))""")
        assert [True, True] in drawn, drawn
        assert [False, True] not in drawn, drawn
        page.wait_for_function(FRAMES_READY, arg="min_radius")
        page.evaluate("() => { window.__given.length = 0; }")
        slider.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(title, arg=f"{value + 0.5:g}")
        page.wait_for_timeout(500)  # a figure from the server would have come by now
        assert page.evaluate("() => window.__given.length") == 0  # drawn by the page
        calls = page.evaluate("() => window.__frameCalls")
        assert ["rho", True] in calls and ["min_radius", False] in calls and ["min_radius", True] in calls, calls
        assert calls.index(["min_radius", False]) < calls.index(["min_radius", True])
    finally:
        page.evaluate("() => { window.__unwrap(); window.__dd.applyFrame = window.__frameApply; }")


def test_a_figure_older_than_the_sliders_is_brought_to_their_values(page) -> None:
    """A figure from the server can arrive after the slider moved on (its answer to a move made before the frames
    came): once its frames are inflated the page draws the sliders' values (a trial saw the title step back)."""
    page.get_by_role("tab", name="Heatmap").click()
    page.get_by_role("tab", name="Target").click()
    page.wait_for_function(FRAMES_READY, arg="rho")
    page.wait_for_function(FRAMES_READY, arg="min_radius")
    shown = page.evaluate("() => document.querySelector('#target-plot .js-plotly-plot').layout.meta.params.rho")
    set_and_prepare = """(value) => { const input = document.querySelector('#rho input[type=number]');
      input.value = String(value);  // the slider moved on, no event: as if the move was made before the figure came
      const gd = document.querySelector('#target-plot .js-plotly-plot');
      delete gd.__ddFrames; window.__dd.prepareFrames(gd); }"""
    title = ("(v) => document.querySelector('#target-plot .js-plotly-plot').layout.title.text"
             ".includes(`${v} · min(w, h)`)")
    later = round(shown + 0.25 if shown <= 1.0 else shown - 0.25, 2)  # a rho slider position (0 to 1.5)
    page.evaluate(set_and_prepare, later)
    try:
        page.wait_for_function(title, arg=f"{later:g}", timeout=5000)
    finally:  # the slider's own value again
        page.evaluate("""(value) => { document.querySelector('#rho input[type=number]').value = String(value);
          window.__dd.catchUp(document.querySelector('#target-plot .js-plotly-plot')); }""", shown)
    page.wait_for_function(title, arg=f"{shown:g}", timeout=5000)


def test_an_out_of_range_typed_value_says_so(page) -> None:
    """A value typed into a slider's box beyond its range fails in Gradio's own check; the page must say so (a trial
    saw an HTTP 500 and nothing on the page), and the figure stays as it was."""
    page.get_by_role("tab", name="Target").click()
    page.wait_for_function(f"() => ({TARGET_Z})() !== null")
    before = page.evaluate("() => document.querySelector('#target-plot .js-plotly-plot').layout.title.text")
    box = page.locator("#min-radius input[type=number]")
    start = box.input_value()
    box.fill("40")
    box.press("Enter")
    page.locator(".toast-body").filter(has_text="greater than maximum value 16").first.wait_for()
    assert page.evaluate("() => document.querySelector('#target-plot .js-plotly-plot').layout.title.text") == before
    box.fill(start)  # back to a valid value: the view follows again
    box.press("Enter")
    page.wait_for_function("(v) => document.querySelector('#target-plot .js-plotly-plot').layout.title.text"
                           ".includes(`r = max(${v}, `)", arg=f"{float(start):g}")


def test_quick_arrow_key_presses_end_on_the_last_value(page) -> None:
    """Four presses faster than a redraw: the figure must end on the slider's last value, not an intermediate one."""
    page.get_by_role("tab", name="Target").click()
    page.wait_for_function(f"() => ({TARGET_Z})() !== null")
    slider = page.locator("#min-radius input[type=range]")
    slider.scroll_into_view_if_needed()
    start = float(page.locator("#min-radius input[type=number]").input_value())
    slider.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    value = float(page.locator("#min-radius input[type=number]").input_value())
    assert value == start + 4 * 0.5
    page.wait_for_function("(v) => document.querySelector('#target-plot .js-plotly-plot').layout.title.text"
                           ".includes(`r = max(${v}, `)", arg=f"{value:g}", timeout=15_000)


def test_other_tabs_render(page) -> None:
    page.get_by_role("tab", name="Heatmap").click()
    page.wait_for_selector("#heatmap-plot .js-plotly-plot")
    shot(page, "05_heatmap", "#heatmap-plot")
    # overlaid, each layer button names its layer in the title
    page.locator("#heat-mode").get_by_text("overlay on image").click()
    page.wait_for_function("() => (document.querySelector('#heatmap-plot .js-plotly-plot').layout.updatemenus || [])"
                           ".length")
    title = "() => document.querySelector('#heatmap-plot .annotation-text').textContent"
    assert page.evaluate(title).startswith("predicted heatmap")
    image_box = "() => { const r = document.querySelector('#heatmap-plot .bglayer rect, #heatmap-plot .nsewdrag')" \
                ".getBoundingClientRect(); return [r.left, r.width].map(Math.round); }"
    before = page.evaluate(image_box)
    page.locator("#heatmap-plot .updatemenu-button").nth(2).click()
    page.wait_for_function(f"() => ({title})().startsWith('predicted − target')")
    # the difference's wider colour-bar labels (-0.5) fit the margin: the image does not move (it shifted a few px)
    assert page.evaluate(image_box) == before
    shown = page.evaluate("() => document.querySelector('#heatmap-plot .js-plotly-plot').data"
                          ".filter(t => t.type === 'heatmap' && t.visible !== false).map(t => t.name)")
    assert shown == ["white wash", "difference"], shown  # the photo washed white under the difference
    page.get_by_role("tab", name="Results").click()
    page.wait_for_selector("#results-plot .js-plotly-plot")
    assert "true positive" in page.locator("#metrics").inner_text()
    shot(page, "06_results")
    page.get_by_role("tab", name="Training").click()
    page.wait_for_selector("#training-plot .js-plotly-plot")
    assert "best AP" in page.locator("#training-summary").inner_text()
    # the loss legend (a scrollable column beside the loss chart) stays clear of the AP chart's axis title, on a
    # laptop-size window with the walkthrough open
    page.set_viewport_size({"width": 1280, "height": 800})
    page.wait_for_timeout(800)
    page.wait_for_function("() => document.querySelector('#training-plot .legend .bg')"
                           " && document.querySelector('#training-plot .g-y2title text')")
    gap = page.evaluate("""() => { const plot = document.querySelector('#training-plot');
      const legend = plot.querySelector('.legend').getBoundingClientRect();
      return plot.querySelector('.g-y2title text').getBoundingClientRect().left - legend.right; }""")
    assert gap > 0, f"the loss legend covers the AP axis title by {-gap:.0f} px"
    page.set_viewport_size({"width": 1500, "height": 1000})
    shot(page, "07_training", "#training-plot")
    page.get_by_role("tab", name="A/B").click()
    page.locator("#compare-btn").click()
    page.wait_for_selector("#compare-plot .js-plotly-plot")
    shot(page, "08_compare")
    page.get_by_role("tab", name="Denoising").click()


def test_corrupt_upload_shows_a_message_and_the_app_keeps_working(page, app_env: support.AppEnv) -> None:  # noqa
    path, message = support.bad_uploads(app_env.work_dir / "browser_bad")["corrupt"]
    page.locator("#input-image button[aria-label='Remove Image']").first.click()
    page.locator("#input-image input[type=file]").set_input_files(str(path))
    toast = page.locator(".toast-body").filter(has_text=message)
    toast.first.wait_for()
    page.wait_for_function("(m) => document.querySelector('#status').innerText.includes(m)", arg=message)
    assert "Cannot run" in page.locator("#status").inner_text()
    assert "Traceback" not in page.locator("body").inner_text()
    shot(page, "09_corrupt_upload")
    # a file that is no image at all: no broken-image icon in the input (the browser cannot decode the preview)
    path, message = support.bad_uploads(app_env.work_dir / "browser_bad")["not_image"]
    page.locator("#input-image button[aria-label='Remove Image']").first.click()
    page.locator("#input-image input[type=file]").set_input_files(str(path))
    page.wait_for_function("(m) => document.querySelector('#status').innerText.includes(m)", arg=message)
    shown = "() => [...document.querySelectorAll('#input-image img')].filter(i => getComputedStyle(i).visibility"\
            " === 'visible' && i.getBoundingClientRect().width > 0).map(i => i.complete && i.naturalWidth > 0)"
    page.wait_for_function("() => [...document.querySelectorAll('#input-image img')].some(i => i.complete)")
    page.wait_for_timeout(300)
    assert page.evaluate(f"() => ({shown})().every(Boolean)"), "a broken-image icon shows in the input"
    # The server still serves: an example runs again, and its image shows in the input.
    page.locator("#examples button, #examples .gallery-item, #examples td").nth(1).click()
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('scene_01')")
    page.wait_for_function(f"() => {{ const s = ({shown})(); return s.length > 0 && s.every(Boolean); }}")
    assert not page.errors, page.errors
