"""The Gradio Blocks: layout and event wiring only. The handlers live with their views in ``app.views.*``, mixed
into ``app.explorer.Explorer``.

Named API endpoints (``gradio_client.Client(url).predict(..., api_name=...)``); their parameters carry the
handlers' argument names (``image_path``, ``steps``, ``seed``, ``proposals`` ...), so they can be passed by name:
    /predict          image_path, checkpoint, steps, seed, proposals, eta, heatmap_init, score_threshold
                      -> detections JSON, trajectory JSON file
    /detect           every control -> every view (the Detect button, except that the page keeps the previous
                      views when a run fails while the API raises the error)
    /target           the target synthesis for min_radius, rho, class, profile box (the page draws rho and
                      min_radius moves from frames the figure carries)
    /render, /heatmap redraws from a stored run (/render also takes the slider position to open at)
    /compare          A/B of two seeds or settings
    /training_curves  AP-vs-iteration figure from a metrics file
    /checkpoint_info  the selected checkpoint's description
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import gradio as gr

from app.controls import (
    MAX_CLASSES_OPTION, MAX_PROPOSALS, MAX_STEPS, MIN_RADIUS_RANGE, MIN_RADIUS_STEP, RHO_RANGE, RHO_STEP,
)
from app.explorer import Explorer
from app.inputs import MAX_CHECKPOINT_BYTES, MAX_IMAGE_BYTES, InputError
from app.views.convergence import PAPER, TEACHING

WALKTHROUGH = (Path(__file__).parent / "walkthrough.md").read_text(encoding="utf-8")

CSS = """
#status { min-height: 2.2em; }
#status p { margin: 0.2em 0; }
/* while a run goes, its progress bar replaces the status line: see-through, it was drawn over the greyed old text */
#status > .wrap.translucent { background: var(--block-background-fill) !important; opacity: 1 !important;
  top: 0 !important; bottom: 0 !important; height: auto !important; }
/* once the run reports its DDIM steps ("DDIM step 5/20 · about 1.3 s left"), Gradio's own timer beside it
   ("processing | 2.1/0.7s", elapsed / Gradio's guess) said a second, different time left; a queued run keeps it */
#status .wrap:has(.progress-level) .progress-text { display: none !important; }
/* a dropdown's value ran under its arrow ("max over classe▾"): the input spans the arrow's place */
.secondary-wrap input[role=combobox] { padding-right: 26px !important; text-overflow: ellipsis; }
/* the image's label badge ran under the component's buttons on a phone: it ends before them */
#input-image label[data-testid=block-label] { max-width: calc(100% - 72px); overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis; }
#input-image label[data-testid=block-label] > span:first-child { flex-shrink: 0; }
#walkthrough-open { width: fit-content !important; min-width: 0 !important; align-self: flex-start; padding: 4px 14px; }
/* the image starts below the component's floating label badge, which covered the top of the preview */
#input-image .upload-container.reduced-height { padding-top: 36px; box-sizing: border-box; }
.compact-row { gap: 6px !important; }
#input-image img.dd-broken { visibility: hidden; }
#detect-btn { font-size: 1.05em; }
/* the step chart is a few bars, nothing to zoom: its tool bar only covered the legend on hover */
#stats-plot .modebar-container { display: none !important; }
/* the theme draws an unchecked box white on white: give it an edge (Box renewal is off in the teaching setting) */
#controls-col input[type=checkbox]:not(:checked) { border: 1.5px solid #6b7280 !important; }
/* three checkboxes share a row: at the theme's size "ensemble" did not fit its column and was cut */
#controls-col .compact-row .checkbox-container .label-text { font-size: 0.88em; }
/* Play stays in sight while one scrolls down to watch (the button, the whole image and its slider did not fit on a
   laptop's screen together, and a phone scrolled Pause away) */
#play-row { align-items: center; position: sticky; top: 0; z-index: 20; background: var(--body-background-fill);
  padding: 4px 0; }
/* (sticky needs no scroll container in between: Gradio's "overflow: hidden" made one; "clip" cuts the same) */
.gradio-container { overflow: clip !important; }
/* box labels over the image: a white outline under the (darkened, app.plotting.text_on_white) class colour, so a red
   label reads on a reddish table; Plotly's textfont.shadow is CSS text-shadow, which Chromium does not draw on SVG */
#denoise-plot .textpoint text, #results-plot .textpoint text, #compare-plot .textpoint text {
  stroke: #fff; stroke-width: 3px; stroke-linejoin: round; paint-order: stroke; }
#denoise-legend .dd-legend { display: flex; flex-wrap: wrap; gap: 4px 6px; align-items: center; font-size: 12px; }
#denoise-legend .layer-toggle { display: inline-flex; align-items: center; gap: 5px; padding: 2px 8px; cursor: pointer;
  border: 1px solid #d1d5db; border-radius: 999px; background: white; font-size: 12px; color: #1f2937; }
#denoise-legend .layer-toggle[aria-pressed=false] { opacity: 0.45; text-decoration: line-through; }
#denoise-legend .swatch { display: inline-block; width: 18px; height: 0; }
#denoise-legend .class-key { display: inline-flex; flex-wrap: wrap; gap: 2px 10px; margin-left: 6px; }
/* the A/B table's figures broke across lines ("AP5 / 0", "64. / 0"); a narrow screen scrolls the table instead */
#compare-summary th:nth-child(n+3), #compare-summary td:nth-child(n+3) { white-space: nowrap; }
#compare-summary table { display: block; overflow-x: auto; max-width: 100%; }
#compare-summary th:nth-child(2), #compare-summary td:nth-child(2) { min-width: 14em; }
/* Phones: the results follow the Detect button; the presets and the long Sampler / Display / Model accordions come
   after them. */
@media (max-width: 768px) {
  #main-row { flex-direction: column; flex-wrap: nowrap; }
  #controls-col { display: contents; }
  #views-col { order: 1; min-width: 0 !important; width: 100% !important; max-width: 100%; overflow-x: clip; }
  #views-col .tab-container, #views-col .tab-wrapper { max-width: 100%; overflow-x: auto; }
  #controls-col > .phone-late { order: 2; }
  /* the sticky Play row covers what scrolls under it: on a phone its caption was four lines (100 px) */
  #play-row { flex-wrap: nowrap; gap: 8px; }
  #play-row > :first-child { flex: 0 0 88px !important; min-width: 88px !important; }
  #play-row .prose { font-size: 12px; line-height: 1.35; }
  /* the A/B table: its AP columns were off the screen's edge; its header words stay whole */
  #compare-summary table { font-size: 12px; }
  #compare-summary th:nth-child(2), #compare-summary td:nth-child(2) { min-width: 7em; }
  #compare-summary th:nth-child(3) { white-space: normal !important; min-width: 5.8em; }
  #compare-summary th, #compare-summary td { padding: 4px 6px !important; }
  #input-image label[data-testid=block-label] { font-size: 13px; }
  /* closed, the sidebar's toggle is a small tab over the page's top-right corner; the Walkthrough button opens it */
  #walkthrough-sidebar:not(.open) .toggle-button { display: none; }
  /* Every view's tab in sight, in two rows, instead of 5 of 7 behind Gradio's "more" menu. Gradio moves tabs into
     that menu when the widths of a hidden copy of the buttons add up to more than the row; the copy is made tiny so
     they all stay in the row, which wraps. Should Gradio still move some (another version), its menu shows. */
  #views-col .tab-container.visually-hidden button { font-size: 1px !important; padding: 0 !important; min-width: 0 !important; }
  #views-col .tab-wrapper { height: auto !important; }
  #views-col .tab-container[role=tablist] { flex-wrap: wrap !important; height: auto !important; }
  #views-col .tab-container[role=tablist] button { padding: 6px 10px !important; }
  #views-col .overflow-menu:not(:has(.overflow-dropdown button)) { display: none !important; }
  /* Plotly's tool bar shows permanently on a touch screen (no hover) and covered the figures' captions and titles */
  #views-col .modebar-container { display: none !important; }
}
"""

# The page's URL follows the view (example, settings, slider position), so the address bar is a link to it. The
# settings part is set after each run; the slider position is added when the denoising plot changes (below).
# ``example`` is the example the server recognised in the image (by its bytes, ``Explorer.example_name``), empty for
# an uploaded image of one's own: such a link cannot carry the image, so it names none.
URL_JS = """(example, steps, eta, renewal, proposals, seed, threshold, lw, labels, scores, gt, tracks, stage) => {
  const params = new URLSearchParams();
  if (example) params.set('example', example);
  params.set('steps', steps); params.set('eta', eta); params.set('renewal', renewal ? 1 : 0);
  params.set('proposals', proposals); params.set('seed', seed); params.set('threshold', threshold);
  params.set('lw', lw); params.set('labels', labels ? 1 : 0); params.set('scores', scores ? 1 : 0);
  params.set('gt', gt ? 1 : 0); params.set('tracks', tracks ? 1 : 0); params.set('stage', stage);
  window.__ddParams = params;
  if (window.__dd) window.__dd.writeUrl();
  return [];
}"""

# Installed once at page load; everything in it runs on Plotly events, nothing on a timer (v2 polled: the URL
# every 500 ms and the phone fit every 1 s).
# - Layer toggles and the class-colour key of the denoising view, drawn as HTML above the plot from the figure's
#   ``layout.meta`` (Plotly's own legend was redrawn on every slider step).
# - The URL's slider position and hidden layers, written 300 ms after the plot last changed; layers hidden by a link
#   (``hide=``) or by a click stay hidden when the server sends a new figure.
# - On a small screen the walkthrough starts collapsed (it would cover the page; its toggle opens it), and the image
#   figures give the image the full width: legend below it, class key hidden, height to the image's aspect ratio;
#   the heatmap view's panels and the convergence view's image and chart stack (every redraw from the server brings
#   the desktop layout back, so this is applied after each new figure).
PAGE_JS = """() => {
  const dd = window.__dd = window.__dd || {};
  const small = window.innerWidth < 768;
  if (!dd.hidden) dd.hidden = new Set((new URLSearchParams(window.location.search).get('hide') || '').split(',')
                                        .filter(Boolean));
  // an upload the browser cannot show (not an image) left a broken-image icon in the input, beside a status line
  // saying the views still show the previous run: the preview is hidden until an image loads there again
  if (!dd.brokenWatch) {
    dd.brokenWatch = true;
    for (const [type, broken] of [['error', true], ['load', false]]) {
      document.addEventListener(type, (e) => {
        const img = e.target;
        if (img && img.tagName === 'IMG' && img.closest('#input-image')) img.classList.toggle('dd-broken', broken);
      }, true);
    }
  }
  if (small) {
    const sidebar = document.querySelector('#walkthrough-sidebar');
    if (sidebar && sidebar.classList.contains('open')) sidebar.querySelector('.toggle-button').click();
  }
  dd.writeUrl = () => {
    if (!window.__ddParams) return;
    const gd = document.querySelector('#denoise-plot .js-plotly-plot');
    const p = new URLSearchParams(window.__ddParams);
    if (gd && gd.layout && gd.layout.sliders && gd.layout.sliders.length) p.set('pos', gd.layout.sliders[0].active);
    if (dd.hidden.size) p.set('hide', [...dd.hidden].join(','));
    const query = '?' + p.toString();
    if (window.location.search !== query) { window.history.replaceState(null, '', query); dd.rebase(); }
  };
  // Under Gradio's <base href>, Plotly writes its clip paths as url('<page address>#id'), with the address read when
  // the plot was made (its gradients are referenced the same way). Once the address changes, those point to another
  // document: the image's clip was lost and the noisy steps' boxes drew over the slider and the page. So after each
  // address change, point them, and Plotly's remembered address, at the current one.
  dd.rebase = () => {
    const base = window.location.href.split('#')[0];
    const local = /url\\((['"]?)[^'")#]*#([^'")]+)\\1\\)/g;
    document.querySelectorAll('.js-plotly-plot').forEach(gd => {
      if (gd._context && gd._context._baseUrl) gd._context._baseUrl = base;
      gd.querySelectorAll('[clip-path], [fill^="url("], [mask], [style*="url("]').forEach(el => {
        for (const name of ['clip-path', 'fill', 'mask', 'style']) {
          const value = el.getAttribute(name);
          if (value && value.includes('url(')) el.setAttribute(name, value.replace(local, `url('${base}#$2')`));
        }
      });
    });
  };
  dd.scheduleUrl = () => { clearTimeout(dd.urlTimer); dd.urlTimer = setTimeout(dd.writeUrl, 300); };
  dd.legend = (gd) => {
    const holder = document.querySelector('#denoise-legend');
    const meta = gd.layout && gd.layout.meta;
    if (!holder || !meta || !meta.layers) return;
    let box = holder.querySelector('.dd-legend');
    if (!box) { box = document.createElement('div'); box.className = 'dd-legend'; holder.append(box); }
    if (box.__meta === meta) return;
    box.__meta = meta;
    box.textContent = '';
    const groups = new Set(meta.layers.map(l => l.group));
    const hidden = new Set([...dd.hidden].filter(g => groups.has(g)));
    const keep = gd.data.map((t, i) => hidden.has(t.legendgroup) && t.visible !== 'legendonly' ? i : -1).filter(i => i >= 0);
    if (keep.length) window.Plotly.restyle(gd, {visible: 'legendonly'}, keep);  // a new figure: re-hide
    const styles = {solid: 'solid', dot: 'dotted', dash: 'dashed'};
    for (const layer of meta.layers) {
      const button = document.createElement('button');
      button.type = 'button'; button.className = 'layer-toggle'; button.dataset.group = layer.group;
      button.title = 'click to hide or show this layer';
      button.setAttribute('aria-pressed', hidden.has(layer.group) ? 'false' : 'true');
      const swatch = document.createElement('span');
      swatch.className = 'swatch'; swatch.style.borderTop = `3px ${styles[layer.dash] || 'solid'} ${layer.colour}`;
      button.append(swatch, document.createTextNode(layer.name));
      button.onclick = () => {
        const plot = document.querySelector('#denoise-plot .js-plotly-plot');
        const show = button.getAttribute('aria-pressed') === 'false';
        const traces = plot.data.map((t, i) => t.legendgroup === layer.group ? i : -1).filter(i => i >= 0);
        button.setAttribute('aria-pressed', show ? 'true' : 'false');
        if (show) dd.hidden.delete(layer.group); else dd.hidden.add(layer.group);
        window.Plotly.restyle(plot, {visible: show ? true : 'legendonly'}, traces);
        dd.scheduleUrl();
      };
      box.append(button);
    }
    const key = document.createElement('span');
    key.className = 'class-key';
    for (const row of meta.keys || []) {
      const item = document.createElement('span');
      const symbol = document.createElement('b');
      symbol.style.color = row.colour; symbol.textContent = row.symbol;
      item.append(symbol, document.createTextNode(' ' + row.name));
      key.append(item);
    }
    box.append(key);
  };
  // height / width of the image a figure's first axes show (4:3 until it has ranges)
  dd.aspect = (L) => {
    const size = L.meta && L.meta.image_size;  // given where Plotly pads the axis ranges (constrain="range")
    if (size) return size[1] / size[0];
    const xr = L.xaxis.range, yr = L.yaxis.range;
    return xr && yr ? Math.abs(yr[0] - yr[1]) / Math.abs(xr[1] - xr[0]) : 0.75;
  };
  // paper fraction (0 at the bottom) of a distance in px from the top of a plot area ``inner`` px tall
  dd.fromTop = (inner) => (px) => 1 - px / inner;
  // the heatmap view's side-by-side panels (predicted | target | difference) stack, each at the full width
  dd.stack = (gd) => {
    const L = gd.layout, n = L.xaxis3 ? 3 : 2, width = gd.getBoundingClientRect().width - 8;
    const aspect = dd.aspect(L);
    const title = 22, bar = 40, image = Math.round(width * aspect), panel = title + image + bar;
    const inner = n * panel, height = inner + 38;  // 28 px on top: the first title clears Plotly's mode bar
    const update = {'legend.orientation': 'h', height, 'margin.t': 28, 'margin.b': 10, 'margin.l': 4, 'margin.r': 4};
    const y = dd.fromTop(inner);
    const suffix = (k) => k ? String(k + 1) : '';
    for (let k = 0; k < n; k++) {
      update[`xaxis${suffix(k)}.domain`] = [0, 1];
      update[`yaxis${suffix(k)}.domain`] = [y(k * panel + title + image), y(k * panel + title)];
    }
    let panelNo = 0;
    (L.annotations || []).forEach((a, i) => {
      if (a.yanchor === 'bottom' && a.y === 1 && panelNo < n) {  // a panel title: above its panel, left
        const k = panelNo++;
        update[`annotations[${i}].x`] = 0; update[`annotations[${i}].xanchor`] = 'left';
        update[`annotations[${i}].y`] = y(k * panel + title);
      } else if (a.y === 0.5) {  // "no heatmap head" note: in the middle of the first panel
        update[`annotations[${i}].x`] = 0.5; update[`annotations[${i}].y`] = y(title + image / 2);
      }
    });
    const bars = gd.data.map((t, i) => t.type === 'heatmap' && t.colorbar ? i : -1).filter(i => i >= 0);
    const panelOf = (i) => gd.data[i].xaxis === 'x3' ? 2 : gd.data[i].xaxis === 'x2' ? 1 : 0;
    const traces = {'colorbar.x': bars.map(() => 0.5), 'colorbar.len': bars.map(() => 0.9),
                    'colorbar.y': bars.map(i => y(panelOf(i) * panel + title + image + 4)),
                    'colorbar.yanchor': bars.map(() => 'top')};
    window.Plotly.update(gd, traces, update, bars);
  };
  // the convergence view's image and IoU chart (side by side on a desktop) stack: image at the full width, the
  // chart below it, the legend under both
  dd.stackConvergence = (gd) => {
    const L = gd.layout, width = gd.getBoundingClientRect().width - 16;
    const aspect = dd.aspect(L);
    const image = Math.round(width * aspect), gap = 60, chart = 200, inner = image + gap + chart, legend = 190;
    const y = dd.fromTop(inner);
    window.Plotly.relayout(gd, {height: inner + 38 + legend, 'margin.t': 38, 'margin.b': legend, 'margin.l': 8,
      'margin.r': 8, 'xaxis.domain': [0, 1], 'yaxis.domain': [y(image), 1], 'xaxis2.domain': [0.14, 1],
      'yaxis2.domain': [0, y(image + gap)], 'legend.orientation': 'h', 'legend.x': 0, 'legend.xanchor': 'left',
      'legend.yref': 'container', 'legend.y': 0, 'legend.yanchor': 'bottom'});
  };
  // the target view: the image at the full width, its colour bar under it, then the profile chart (the desktop layout
  // on a phone squeezed the image and left a tall gap above the chart)
  dd.stackTarget = (gd) => {
    const L = gd.layout, width = gd.getBoundingClientRect().width, left = 44, right = 10, bottom = 40;
    const top = (L.margin && L.margin.t) || 64, size = L.meta.image_size;
    const image = Math.round((width - left - right) * dd.aspect(L)), bar = 62, chart = 130;
    const inner = image + bar + chart, y = dd.fromTop(inner);
    const bars = gd.data.map((t, i) => t.type === 'heatmap' && t.colorbar ? i : -1).filter(i => i >= 0);
    window.Plotly.update(gd, {'colorbar.x': 0, 'colorbar.xanchor': 'left', 'colorbar.y': y(image + 8),
                              'colorbar.len': 1},
                         {height: inner + top + bottom, 'margin.l': left, 'margin.r': right, 'margin.b': bottom,
                          'xaxis.range': [0, size[0]], 'yaxis.range': [size[1], 0],  // Plotly padded them
                          'yaxis.domain': [y(image), 1], 'yaxis2.domain': [0, y(image + bar)]}, bars);
    gd.__ddFitWidth = width;
  };
  // the training view's three panels (losses | AP, per-class AP below) stack at the full width, each legend under or
  // over its own panel (side by side, the legends covered the curves and the axis titles)
  dd.stackTraining = (gd) => {
    // each legend starts under its panel's axis title ("iteration", ~50 px under the panel; the legends covered it)
    const L = gd.layout, inner = 930, y = dd.fromTop(inner);
    const update = {height: inner + 24 + 96, 'margin.l': 48, 'margin.r': 8, 'margin.t': 24, 'margin.b': 96,
      'xaxis.domain': [0, 1], 'yaxis.domain': [y(200), 1], 'xaxis2.domain': [0, 1], 'yaxis2.domain': [y(600), y(420)],
      'xaxis3.domain': [0, 1], 'yaxis3.domain': [0, y(730)],
      'legend.orientation': 'h', 'legend.x': 0, 'legend.y': y(262), 'legend.yanchor': 'top', 'legend.maxheight': 110,
      'legend2.x': 0, 'legend2.y': y(382), 'legend2.yanchor': 'top',
      'legend3.x': 0, 'legend3.y': y(662), 'legend3.yanchor': 'top', 'legend3.orientation': 'v',
      // upright class names: at the desktop's slant they ran into each other and past the left edge
      'xaxis3.tickangle': -90, 'xaxis3.tickfont.size': 10};
    const centres = {loss: 100, ap: 510, per_class: 830};  // "no ... rows" notes: the middle of their panel
    (L.annotations || []).forEach((a, i) => {
      if (a.name in centres) {
        update[`annotations[${i}].x`] = 0.5; update[`annotations[${i}].y`] = y(centres[a.name]);
      }
    });
    window.Plotly.relayout(gd, update);
  };
  // the A/B view's two panels stack, each at the full width (side by side on a phone their captions ran into each
  // other and the images were ~190 px wide); the shared slider stays under both
  dd.stackCompare = (gd) => {
    const L = gd.layout, width = gd.getBoundingClientRect().width - 16;
    const image = Math.round(width * dd.aspect(L)), caption = 26, inner = 2 * image + caption, y = dd.fromTop(inner);
    window.Plotly.relayout(gd, {height: inner + 26 + 70, 'margin.t': 26, 'margin.b': 70, 'margin.l': 8,
      'margin.r': 8, 'legend.orientation': 'h', 'xaxis.domain': [0, 1], 'xaxis2.domain': [0, 1],
      'yaxis.domain': [y(image), 1], 'yaxis2.domain': [0, y(image + caption)], 'sliders[0].len': 0.96});
  };
  dd.fit = (gd, id) => {
    if (!small || !window.Plotly || !gd.layout || !gd.layout.xaxis) return;
    if (gd.layout.legend && gd.layout.legend.orientation === 'h') return;  // fitted already
    if (id === 'heatmap-plot' && gd.layout.xaxis2) { dd.stack(gd); return; }  // the overlay: as one image below
    if (id === 'convergence-plot') { if (gd.layout.xaxis2) dd.stackConvergence(gd); return; }
    if (id === 'training-plot') { if (gd.layout.xaxis3) dd.stackTraining(gd); return; }
    if (id === 'compare-plot' && gd.layout.xaxis2) { dd.stackCompare(gd); return; }
    if (id === 'target-plot') {
      // fitted once per figure and again at a new width (drawn in a hidden tab, it had another width)
      const width = gd.getBoundingClientRect().width;
      if (gd.layout.yaxis2 && gd.layout.meta && gd.layout.meta.image_size && width > 0 &&
          (gd.__ddFitted !== gd.layout.meta || Math.abs(width - gd.__ddFitWidth) > 2)) {
        gd.__ddFitted = gd.layout.meta;
        dd.stackTarget(gd);
      }
      return;
    }
    const aspect = dd.aspect(gd.layout);
    const width = gd.getBoundingClientRect().width;
    const legend = gd.layout.showlegend !== false;
    const top = Math.max(0, ((gd.layout.margin || {}).t || 34) - 34);  // a taller top than the denoising view's
    const side = Math.max(0, ((gd.layout.margin || {}).l || 0) + ((gd.layout.margin || {}).r || 0) - 16);
    const update = {'legend.orientation': 'h', 'legend.x': 0, 'legend.xanchor': 'left', 'legend.yref': 'container',
                    'legend.y': 0, 'legend.yanchor': 'bottom', 'margin.b': legend ? 170 : 70,
                    // the image spans the plot area, narrower than the figure by a wide side margin (the heatmap
                    // overlay's colour bar: its image was 64 px narrower, with as much blank under it)
                    'height': Math.round((width - side) * aspect) + (legend ? 250 : 110) + top,
                    'xaxis.domain': [0, 1], 'sliders[0].len': 0.96};
    (gd.layout.annotations || []).forEach((a, i) => { if (a.xref === 'paper' && a.x > 0.5) update[`annotations[${i}].visible`] = false; });
    const slider = gd.layout.sliders && gd.layout.sliders.length;  // a slider lives in the bottom margin too
    window.Plotly.relayout(gd, update).then(() => {
      // once drawn, the legend's height is known: give back the room held for it that it left empty (the results
      // view's two-row legend sat ~190 px below the image)
      const box = gd.querySelector('.legend'), fl = gd._fullLayout;
      if (!legend || slider || !box || !fl.yaxis) return;
      const below = Math.round(box.getBBox().height + 16);
      const height = Math.round(fl.margin.t + fl.yaxis._length + 8 + below);
      if (height < update.height - 24) window.Plotly.relayout(gd, {'margin.b': below, height});
    });
  };
  // Box labels are placed by the server for an image drawn at least LABEL_DRAWN_WIDTH px wide; drawn narrower (a
  // phone), the same 11 px labels cover more of the image and ran into each other. After each draw the labels (best
  // score first) are shown only where they do not overlap one already shown; the hover still names every box.
  dd.declutter = (gd) => {
    const texts = [];
    gd.querySelectorAll('.scatterlayer .trace').forEach(g => { const d = g.__data__, t = d && d[0] && d[0].trace;
      if (t && t.name === 'labels') g.querySelectorAll('.textpoint text').forEach(e => texts.push(e)); });
    texts.forEach(e => { e.style.display = ''; });
    const kept = [];
    for (const e of texts) {
      if (!e.textContent.trim()) continue;
      const r = e.getBoundingClientRect();
      if (kept.some(k => r.left < k.right && k.left < r.right && r.top < k.bottom && k.top < r.bottom)) {
        e.style.display = 'none';
      } else kept.push(r);
    }
  };
  // Plotly labels every k-th slider position, k from the widest label and the spacing; on a phone k = 3 left the
  // last position ("final") unlabelled. Smaller label text until it is labelled (10 px does it at 390 px).
  dd.labelFinal = (gd) => {
    const S = gd._fullLayout && gd._fullLayout.sliders && gd._fullLayout.sliders[0];
    if (!S || !S._dims || (S._stepCount - 1) % S._dims.labelStride === 0) return;
    const size = ((S.font && S.font.size) || 11) - 1;
    if (size >= 8) window.Plotly.relayout(gd, {'sliders[0].font.size': size});
  };
  // Gradio's Plot component draws each new figure twice: its old plot (about to be removed) is given the new figure
  // with Plotly.react, then a new plot is made for it (Gradio 6 re-creates the component, a {#key} block, on every
  // new value). Measured: 2 draws per rho move, ~80 ms each on a 2-core CPU. So a react on a plot that already shows
  // a figure waits one task, and is dropped if the plot has left the page by then.
  dd.reactOnce = () => {
    const P = window.Plotly;
    if (!P || P.__ddOnce) return;
    const react = P.react;
    P.react = function (gd, ...rest) {
      if (!gd || typeof gd !== 'object' || !gd._fullLayout) return react.call(this, gd, ...rest);
      return new Promise(resolve => setTimeout(() => resolve(gd.isConnected ? react.call(P, gd, ...rest) : gd), 0));
    };
    P.__ddOnce = true;
  };
  // A slider position's boxes on an SVG layer over the plot, from the figure's ``layout.meta.tween`` (decoded once
  // per figure), styled as the figure draws them. Play glides them between positions; a press on the slider shows
  // the pressed position's boxes on it at once, and Plotly's restyle of the whole view (labels, tracks, hover:
  // ~70 ms on a 2-core CPU, most of it Plotly's full replot) follows a frame later and takes the layer away.
  dd.tween = (gd) => {
    const tw = gd.layout && gd.layout.meta && gd.layout.meta.tween;
    if (!tw) return null;
    if (gd.__ddTween && gd.__ddTween.tw === tw) return gd.__ddTween;
    const decode = (text, Type) => { if (!text) return null; const bin = atob(text);
      const bytes = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return new Type(bytes.buffer); };
    gd.__ddTween = {tw, S: tw.S, K: tw.K, N: tw.N, in: decode(tw.in, Int16Array), out: decode(tw.out, Int16Array),
      labels: decode(tw.labels, Uint8Array), levels: decode(tw.levels, Uint8Array), wide: decode(tw.wide, Uint8Array),
      renewed: decode(tw.renewed, Uint8Array), peaks: decode(tw.heatmap, Uint8Array),
      shown: tw.classes_shown ? new Set(tw.classes_shown) : null,
      final: tw.final ? {M: tw.final.M, boxes: decode(tw.final.boxes, Int16Array),
                         labels: decode(tw.final.labels, Uint8Array), levels: decode(tw.final.levels, Uint8Array),
                         wide: decode(tw.final.wide, Uint8Array)} : null};
    return gd.__ddTween;
  };
  // the boxes (n x 4, pixels) and their stroke (colour, opacity, width, dash) fed to step s ("in"), predicted at
  // carried stage k of step s ("out"), or the final detections ("final"); a box of a layer hidden by its button, or
  // of a class not shown, is unseen
  dd.boxState = (T, kind, s, k) => {
    const tw = T.tw, F = T.final, N = kind === 'final' ? F.M : T.N;
    const xy = new Float32Array(N * 4), colour = [], opacity = [], width = [], dash = [];
    const hidden = (group) => !!(dd.hidden && dd.hidden.has(group));
    for (let j = 0; j < N; j++) {
      const base = kind === 'in' ? (s * N + j) * 4 : kind === 'out' ? ((s * T.K + k) * N + j) * 4 : j * 4;
      const src = kind === 'in' ? T.in : kind === 'out' ? T.out : F.boxes;
      for (let c = 0; c < 4; c++) xy[j * 4 + c] = src[base + c] / 2;
      if (kind === 'final') {
        const level = F.levels[j], label = F.labels[j];
        colour.push(level === 0 ? tw.faint : tw.colours[label % tw.colours.length]);
        opacity.push(hidden('boxes') || (T.shown && !T.shown.has(label)) ? 0 : tw.opacities[level]);
        width.push(F.wide[j] ? tw.widths.wide : tw.widths.thin); dash.push(false);
      } else if (kind === 'in') {
        const peak = T.peaks && T.peaks[s * N + j], fresh = !peak && s > 0 && T.renewed[(s - 1) * N + j];
        colour.push(peak ? tw.peak || tw.noise : fresh ? tw.fresh || tw.noise : tw.noise);
        opacity.push(hidden(peak ? 'heatmap' : fresh ? 'renewed' : 'noise') ? 0 : 0.55);
        width.push(tw.widths ? tw.widths.noise : 1.5); dash.push(!!fresh);
      } else {
        const q = (s * T.K + k) * N + j, level = T.levels[q], label = T.labels[q];
        colour.push(level === 0 ? tw.faint : tw.colours[label % tw.colours.length]);
        opacity.push(hidden('boxes') || (T.shown && !T.shown.has(label)) ? 0 : tw.opacities[level]);
        width.push(tw.widths ? (T.wide[q] ? tw.widths.wide : tw.widths.thin) : 1.5); dash.push(false);
      }
    }
    return {xy, colour, opacity, width, dash};
  };
  dd.overlay = (gd, N) => {
    const NS = 'http://www.w3.org/2000/svg', xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
    let svg = gd.querySelector('svg.dd-tween');
    if (!svg) { svg = document.createElementNS(NS, 'svg'); svg.setAttribute('class', 'dd-tween');
      svg.style.cssText = 'position:absolute;pointer-events:none;overflow:hidden';
      gd.querySelector('.svg-container').append(svg); }
    svg.style.left = xa._offset + 'px'; svg.style.top = ya._offset + 'px';
    svg.setAttribute('width', xa._length); svg.setAttribute('height', ya._length);
    if (!svg.querySelector('text')) {  // the caption, last
      const r = document.createElementNS(NS, 'text');
      r.setAttribute('x', 4); r.setAttribute('y', 16); r.setAttribute('class', 'dd-tween-caption');
      r.setAttribute('font-size', '13'); r.setAttribute('font-weight', '700'); r.setAttribute('fill', '#111827');
      r.setAttribute('stroke', 'white'); r.setAttribute('stroke-width', '3'); r.setAttribute('paint-order', 'stroke');
      svg.append(r);
    }
    for (let j = svg.querySelectorAll('rect').length; j < N; j++) {  // at least N boxes, before the caption
      const r = document.createElementNS(NS, 'rect');
      r.setAttribute('fill', 'none');
      svg.insertBefore(r, svg.querySelector('text'));
    }
    return {svg, xa, ya};
  };
  // boxes eased e (0..1) of the way from state a to state b, both of N boxes (slots in ``fresh`` jump: a renewed
  // box starts afresh); the layer's other rectangles are emptied
  dd.drawBoxes = (L, N, a, b, e, fresh) => {
    const rects = L.svg.querySelectorAll('rect');
    for (let j = N; j < rects.length; j++) rects[j].setAttribute('stroke-opacity', 0);
    for (let j = 0; j < N; j++) {
      const w = fresh && fresh[j] ? 1 : e, c = [0, 1, 2, 3].map(q => a.xy[j * 4 + q] + (b.xy[j * 4 + q] - a.xy[j * 4 + q]) * w);
      const x0 = L.xa.l2p(c[0]), x1 = L.xa.l2p(c[2]), y0 = L.ya.l2p(c[1]), y1 = L.ya.l2p(c[3]);
      const r = rects[j], to = w < 0.5 ? a : b, dot = Math.max(to.width[j], 3);  // Plotly's "dot" dash
      r.setAttribute('x', Math.min(x0, x1)); r.setAttribute('y', Math.min(y0, y1));
      // a box of zero width or height is a line (an SVG rect of zero size is not drawn at all)
      r.setAttribute('width', Math.max(Math.abs(x1 - x0), 0.01)); r.setAttribute('height', Math.max(Math.abs(y1 - y0), 0.01));
      r.setAttribute('stroke', to.colour[j]); r.setAttribute('stroke-opacity', to.opacity[j]);
      r.setAttribute('stroke-width', to.width[j]); r.setAttribute('stroke-dasharray', to.dash[j] ? `${dot},${dot}` : 'none');
    }
  };
  dd.caption = (L, caption) => {  // the layer's caption, fitted to the image (on a phone 13 px ran past its edge)
    const text = L.svg.querySelector('text');
    if (text.textContent === caption) return;
    text.textContent = caption;
    let size = 13;
    text.setAttribute('font-size', size);
    while (caption && size > 8 && text.getComputedTextLength() > L.xa._length - 8) text.setAttribute('font-size', --size);
  };
  // hide (or show again) the slider's slot traces, but those ``keep`` says to leave alone
  dd.hideSlots = (gd, hide, keep) => {
    const ids = new Set(gd.layout.sliders[0].steps[0].args[1]);
    gd.querySelectorAll('.scatterlayer .trace').forEach(g => { const d = g.__data__, t = d && d[0] && d[0].trace;
      if (t && ids.has(t.index) && !(keep && keep(t))) g.style.opacity = hide ? 0 : ''; });
  };
  dd.parsePosition = (label) => { const m = /^(\\d+)·(in|out)$/.exec(label || '');
    return m ? [m[2], +m[1] - 1] : ['final', -1]; };
  // Show slider position i: its boxes on the layer now (painted with the next frame), the restyle after that frame.
  dd.scrub = (gd, i) => {
    const st = gd.layout.sliders[0].steps[i];
    if (!st) return;
    cancelAnimationFrame(gd.__ddScrubFrame); clearTimeout(gd.__ddScrubTimer);
    gd.__ddScrubTo = i;
    const apply = () => window.Plotly.restyle(gd, st.args[0], st.args[1]).then(() => {
      if (gd.__ddScrubTo !== i) return;  // another press came meanwhile: its restyle follows
      const svg = gd.querySelector('svg.dd-tween');
      if (svg) svg.style.display = 'none';
      dd.hideSlots(gd, false);
    });
    const T = dd.tween(gd), meta = gd.layout.meta || {};
    const [kind, s] = dd.parsePosition((meta.positions || [])[i]);
    if (!T || (kind === 'final' && !T.final) || !gd.querySelector('.svg-container')) { apply(); return; }
    const boxes = dd.boxState(T, kind, s, kind === 'in' ? 0 : T.K - 1), n = boxes.colour.length;
    const L = dd.overlay(gd, n);
    dd.drawBoxes(L, n, boxes, boxes, 0);
    dd.caption(L, '');
    gd.querySelectorAll('.scatterlayer .trace').forEach(g => { const d = g.__data__, t = d && d[0] && d[0].trace;
      const text = t && t.name === 'caption' && g.querySelector('text');  // the caption says the new position now
      if (text && meta.titles) { text.textContent = meta.titles[i]; text.style.fontWeight = 700; } });
    L.svg.style.display = '';
    dd.hideSlots(gd, true, t => t.name === 'caption');
    dd.scrubShown = performance.now();
    gd.__ddScrubFrame = requestAnimationFrame(() => { gd.__ddScrubTimer = setTimeout(apply, 0); });
  };
  // The page applies the slider's steps itself (Plotly's own run of a step, a restyle, would come before the
  // layer is painted): the steps stay executable in the figure (it works on its own), and are switched off here.
  dd.takeSlider = (gd) => {
    for (const L of [gd.layout, gd._fullLayout]) {
      const S = L && L.sliders && L.sliders[0];
      if (S && S.steps) S.steps.forEach(st => { st.execute = false; });
    }
    if (gd.__ddScrubWatch) return;
    gd.__ddScrubWatch = true;
    gd.on('plotly_sliderchange', (e) => { if (e && e.interaction && e.slider) dd.scrub(gd, e.slider.active); });
  };
  // The target view's slider frames (``layout.meta.frames``, see app.views.target.slider_frames): per live slider
  // (rho, min_radius), every position's map, radii, profile and title, the other slider held at ``held``. The maps
  // are inflated once per figure; a frame is then drawn with one Plotly.update (no server round trip), and the
  // figure's current parameters (``params``) follow it, so one slider's frames stop being used once the other moved.
  dd.bytes = (text) => { const bin = atob(text), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i); return out; };
  dd.inflateMap = async (text, shape) => {  // inverse of app.views.target.encode_map: (H rows of W) uint8
    const stream = new Blob([dd.bytes(text)]).stream().pipeThrough(new DecompressionStream('deflate'));
    const out = new Uint8Array(await new Response(stream).arrayBuffer()), [H, W] = shape;
    for (let i = 1; i < H; i++) for (let j = 0; j < W; j++) out[i * W + j] = (out[i * W + j] + out[(i - 1) * W + j]) & 255;
    for (let i = 0; i < H; i++) for (let j = 1; j < W; j++) out[i * W + j] = (out[i * W + j] + out[i * W + j - 1]) & 255;
    return Array.from({length: H}, (_, i) => out.subarray(i * W, (i + 1) * W));
  };
  dd.prepareFrames = (gd) => {
    const meta = gd.layout && gd.layout.meta, F = meta && meta.frames;
    if (!F || (gd.__ddFrames && gd.__ddFrames.F === F)) return;
    const entry = gd.__ddFrames = {F, z: {}, params: Object.assign({}, meta.params)};
    dd.mapCache = dd.mapCache || new Map();  // the last few frame sets' maps, by their text
    let cached = false;
    for (const slider of Object.keys(F)) {
      const key = F[slider].z.join('|');
      if (dd.mapCache.has(key)) { entry.z[slider] = dd.mapCache.get(key); cached = true; continue; }
      Promise.all(F[slider].z.map(text => dd.inflateMap(text, F[slider].shape)))
        .then(z => {
          entry.z[slider] = z; dd.mapCache.set(key, z);
          while (dd.mapCache.size > 4) dd.mapCache.delete(dd.mapCache.keys().next().value);
          dd.catchUp(gd);
        }).catch(e => console.error('target frames', e));
    }
    // the same frames as a figure shown before (a drag answered move by move): brought to the sliders before the
    // browser paints it
    if (cached) dd.catchUp(gd);
  };
  // A figure from the server can be older than the sliders: the moves made while it was on its way were not drawn
  // (no frames yet), and the server's answers to them come later still. Once its frames are inflated (at once when
  // they are those of a figure shown before), the figure is brought to the sliders' values (a fresh-user trial saw
  // the title step back 5 times in one drag).
  dd.LIVE = [['rho', 'rho'], ['min-radius', 'min_radius']];
  dd.catchUp = (gd) => {
    if (!gd.isConnected) return;
    for (const [id, slider] of dd.LIVE) {
      const input = document.querySelector(`#${id} input[type=number]`);
      if (input && input.value !== '') dd.applyFrame(gd, slider, Number(input.value));
    }
  };
  // draw the frame of ``slider`` at ``value``; false when the shown figure has none for it (the server draws it then)
  dd.applyFrame = (gd, slider, value) => {
    const R = gd && gd.__ddFrames, F = R && R.F && R.F[slider], Z = R && R.z[slider];
    if (!F || !Z || !gd.layout || !gd.layout.meta || gd.layout.meta.frames !== R.F) return false;
    if (Object.keys(F.held).some(other => Math.abs(R.params[other] - F.held[other]) > 1e-9)) return false;
    const k = F.values.findIndex(v => Math.abs(v - value) < 1e-6);
    if (k < 0) return false;
    if (Math.abs(R.params[slider] - F.values[k]) < 1e-9) return true;  // shown already
    const f32 = (text) => new Float32Array(dd.bytes(text).buffer), radii = f32(F.radii[k]), s = F.stride;
    const find = (name) => gd.data.findIndex(t => t.name === name);
    const heat = find('target'), circles = find('gaussian radius'), centres = find('centres'), profile = find('profile');
    const update = {z: [], x: [], y: [], customdata: []}, traces = [];
    const add = (i, values) => { traces.push(i); for (const key in update) update[key].push(values[key]); };
    add(heat, {z: Z[k]});
    if (circles >= 0 && centres >= 0) {  // each shown box's circle: the frames' unit circle (circle_path's) scaled
      const c = gd._fullData[centres], [ux, uy] = F.unit_circle, xs = [], ys = [];
      const rows = gd.data[centres].customdata.map(row => [row[0], radii[row[5]], radii[row[5]] * s, row[3], row[4], row[5]]);
      rows.forEach((row, j) => {
        for (let a = 0; a < ux.length; a++) { xs.push(c.x[j] + row[2] * ux[a]); ys.push(c.y[j] + row[2] * uy[a]); }
        xs.push(null); ys.push(null);
      });
      add(circles, {x: xs, y: ys}); add(centres, {customdata: rows});
    }
    const layout = {'title.text': F.title[k]};
    if (profile >= 0 && F.profile) {
      add(profile, {y: f32(F.profile[k])});
      const r = radii[F.box] * s;
      layout['shapes[0].x0'] = layout['shapes[0].x1'] = F.box_cx - r;
      layout['shapes[1].x0'] = layout['shapes[1].x1'] = F.box_cx + r;
    }
    R.params[slider] = F.values[k];
    window.Plotly.update(gd, update, layout, traces);
    return true;
  };
  dd.watchFrames = () => {
    for (const [id, slider] of dd.LIVE) {
      const range = document.querySelector(`#${id} input[type=range]`);
      if (!range || range.__ddFrames) continue;
      range.__ddFrames = true;
      range.addEventListener('input', () => dd.applyFrame(document.querySelector('#target-plot .js-plotly-plot'),
                                                          slider, Number(range.value)));
    }
  };
  dd.attach = () => {
    dd.reactOnce();
    dd.watchFrames();
    for (const id of ['denoise-plot', 'results-plot', 'compare-plot', 'heatmap-plot', 'convergence-plot',
                      'target-plot', 'training-plot']) {
      const gd = document.querySelector(`#${id} .js-plotly-plot`);
      if (!gd || gd.__ddAttached || !gd.on) continue;
      gd.__ddAttached = true;
      const after = () => {
        if (id === 'denoise-plot' || id === 'results-plot' || id === 'compare-plot') dd.declutter(gd);
        if (id === 'target-plot') dd.prepareFrames(gd);
        if (id === 'denoise-plot') {
          dd.takeSlider(gd); dd.legend(gd); dd.scheduleUrl();
          if (dd.playPending && gd.layout.sliders && gd.layout.sliders.length) {  // Play was pressed before the view
            dd.playPending = false;
            document.querySelector('#play-btn').click();
          }
        }
        dd.fit(gd, id);
        if (small && (id === 'denoise-plot' || id === 'compare-plot')) dd.labelFinal(gd);
      };
      gd.on('plotly_afterplot', after);
      // the target view is fitted to its width, and its tab may have been hidden when it was drawn
      if (id === 'target-plot' && small && window.ResizeObserver) new ResizeObserver(() => dd.fit(gd, id)).observe(gd);
      after();
    }
  };
  if (!dd.observer) {
    dd.observer = new MutationObserver(dd.attach);
    dd.observer.observe(document.querySelector('#views-col') || document.body, {childList: true, subtree: true});
  }
  dd.attach();
}"""

# The walkthrough button opens or closes the sidebar with the sidebar's own toggle.
WALKTHROUGH_JS = """() => {
  const sidebar = document.querySelector('#walkthrough-sidebar');
  if (!sidebar) return [];
  sidebar.querySelector('.toggle-button').click();
  return [];
}"""

# Play / pause of the denoising slider, in the browser (no server call). Between two positions the boxes glide
# slot by slot (an SVG layer over the plot, eased over TWEEN_MS, drawn from the figure's ``layout.meta.tween``):
# x_t -> each head stage's prediction in turn (the caption names the stage) -> the shown stage -> x_{t-1} of the
# next step; renewed slots appear at their new place instead of flying across the image. Then the slider lands on
# the position (the same restyle a click applies) and holds HOLD_MS. The last move, to the final detections (after
# ensemble and NMS, no slot correspondence), is a cut. Stops at the end; Pause stops at the next position; a press
# on the slider stops it at once, where pressed.
PLAY_JS = """() => {
  const dd = window.__dd = window.__dd || {};
  const button = document.querySelector('#play-btn');
  const setLabel = (text) => { if (button) button.textContent = text; };
  if (dd.playing) { dd.playing = false; setLabel('▶ Play'); return []; }
  const gd = document.querySelector('#denoise-plot .js-plotly-plot');
  if (!gd || !gd.layout || !gd.layout.sliders || !gd.layout.sliders.length || !window.Plotly) {
    // no view yet (the first one is on its way): Play starts when it is drawn; a second press takes that back
    dd.playPending = !dd.playPending;
    setLabel(dd.playPending ? '▶ Loading…' : '▶ Play');
    return [];
  }
  dd.playPending = false;
  dd.playing = true; setLabel('❚❚ Pause');
  if (dd.running) return [];  // a pause was asked during a glide: that loop carries on
  dd.running = true;
  dd.interrupted = false;
  dd.played = [];
  if (!gd.__ddPlayWatch) {  // a press on the slider while Play runs wins: Play stops at once and stays off it
    gd.__ddPlayWatch = true;
    gd.on('plotly_sliderstart', () => { if (dd.running) { dd.interrupted = true; dd.playing = false; } });
  }
  const TWEEN = TWEEN_MS, STAGE = STAGE_MS, HOLD = HOLD_MS;
  const T = dd.tween(gd), tw = T && T.tw;
  const state = (kind, s, k) => dd.boxState(T, kind, s, k);
  const layer = () => dd.overlay(gd, T.N);
  const draw = (L, a, b, e, fresh) => dd.drawBoxes(L, T.N, a, b, e, fresh);
  const ease = (t) => t < 0.5 ? 4 * t * t * t : 1 - Math.pow(-2 * t + 2, 3) / 2;
  const glide = (L, a, b, ms, caption, fresh) => new Promise(done => {
    dd.caption(L, caption);
    draw(L, a, b, 0, fresh);  // before the next frame: it showed the last glide's boxes for one frame
    const t0 = performance.now();
    const frame = (now) => { if (dd.interrupted) { done(); return; }
      const t = Math.min(1, (now - t0) / ms); draw(L, a, b, ease(t), fresh);
      if (t < 1) requestAnimationFrame(frame); else done(); };
    requestAnimationFrame(frame);
  });
  const land = async (i) => { const st = gd.layout.sliders[0].steps[i];
    await window.Plotly.restyle(gd, st.args[0], st.args[1]);
    await window.Plotly.relayout(gd, {'sliders[0].active': i}); dd.played.push(performance.now()); };
  const sleep = (ms) => new Promise(r => setTimeout(r, ms));
  const labels = (gd.layout.meta || {}).positions || [];
  const parse = dd.parsePosition;
  const run = async () => {
    const count = gd.layout.sliders[0].steps.length;
    let i = gd.layout.sliders[0].active || 0;
    if (i >= count - 1) { i = 0; await land(0); await sleep(HOLD); }
    while (dd.playing && i < count - 1) {
      const [kindA, sA] = parse(labels[i]), [kindB, sB] = parse(labels[i + 1]);
      if (T && kindB !== 'final' && gd.querySelector('.svg-container')) {
        const L = layer();
        L.svg.style.display = '';
        dd.hideSlots(gd, true);
        const steps = T.S;
        if (kindA === 'in') {  // x_t through the head's stages to the shown stage
          let from = state('in', sA, 0);
          for (let k = 0; k < T.K; k++) {
            const to = state('out', sA, k);
            await glide(L, from, to, Math.max(TWEEN / T.K, STAGE),
                        `Step ${sA + 1}/${steps} · the head refines the boxes: stage ${tw.stages[k]} of ${tw.stage}`);
            if (dd.interrupted) break;
            from = to;
          }
        } else {  // the DDIM update: the shown stage's x0 -> the next step's x_t; renewed slots start afresh
          const fresh = Array.from({length: T.N}, (_, j) => T.renewed[sA * T.N + j]);
          await glide(L, state('out', sA, T.K - 1), state('in', sB, 0), TWEEN,
                      `Step ${sA + 1}/${steps} → ${sB + 1} · DDIM update to the next noisy boxes`, fresh);
        }
        // a press on the slider: settle where it was pressed (the preview of that position, then its restyle)
        if (dd.interrupted) { dd.scrub(gd, gd.layout.sliders[0].active); break; }
        await land(i + 1);
        dd.hideSlots(gd, false);
        L.svg.style.display = 'none';
      } else if (!dd.interrupted) {
        await land(i + 1);
      }
      if (dd.interrupted) break;
      i += 1;
      if (i < count - 1) await sleep(HOLD);
    }
    dd.running = false; dd.playing = false; setLabel('▶ Play');
  };
  run().catch((e) => { console.error(e); dd.running = false; dd.playing = false; setLabel('▶ Play'); dd.hideSlots(gd, false); });
  return [];
}"""
TWEEN_MS = 600  # one glide between positions (split over the head stages from x_t to the prediction)
# but at least this long a stage: at 600 / 4 ms each stage's caption went by too fast to read (fresh-user trial)
STAGE_MS = 250
TARGET_CONTROL_WIDTH = 240  # px: a Target control narrower than this takes its own line
HOLD_MS = 350  # then the position holds: about a second a position, slow enough to follow one box

# A move of a live target slider (rho, min_radius): the page draws it from the target figure's frames when it can (a
# listener on the slider may have already), and tells the server so in the hidden last input.
LIVE_SLIDER_JS = """(...args) => {
  const n = N_INPUTS, out = args.slice(0, n);
  const gd = document.querySelector('#target-plot .js-plotly-plot');
  out[n - 1] = !!(window.__dd && window.__dd.applyFrame && window.__dd.applyFrame(gd, 'SLIDER', Number(args[VALUE_INDEX])));
  return out;
}"""

# Before a display redraw, the browser puts the denoising slider's position into the hidden `position` input (the
# last of the inputs), so the redrawn figure opens where the user was.
KEEP_POSITION_JS = """(...args) => {
  const gd = document.querySelector('#denoise-plot .js-plotly-plot');
  const n = N_INPUTS;
  const out = args.slice(0, n);
  out[n - 1] = gd && gd.layout && gd.layout.sliders && gd.layout.sliders.length ? gd.layout.sliders[0].active : null;
  return out;
}"""



class SafeImage(gr.Image):
    """``gr.Image`` that hands the handler the uploaded file's path without opening it: Gradio's own preprocessing
    decodes with PIL before any check could run, so a decompression bomb or a non-image would fail there with a
    generic error. ``app.inputs.load_image`` validates instead and says what is wrong."""

    is_template = True  # the browser renders it as a plain Image

    def preprocess(self, payload: Any) -> str | None:
        if payload is None:
            return None
        if getattr(payload, "path", None):
            return str(payload.path)
        return super().preprocess(payload)


def build_demo(explorer: Explorer | None = None) -> gr.Blocks:
    explorer = explorer or Explorer()
    checkpoints = explorer.checkpoint_choices()
    default_ckpt = explorer.default_checkpoint()
    try:  # the controls start from the default checkpoint's config (API clients see these choices)
        cfg = explorer.config(default_ckpt, None) if default_ckpt else None
    except InputError:
        cfg = None
    class_names = list(cfg.class_names) if cfg else []
    class_options = [MAX_CLASSES_OPTION] + class_names
    stages = cfg.num_stages if cfg else 6
    has_heatmap = bool(cfg and cfg.use_heatmap)

    with gr.Blocks(title="DiffusionDet Explorer", delete_cache=(1800, 3600), fill_width=True) as demo:
        gr.Markdown("# DiffusionDet Explorer\nWatch random boxes turn into detections, one DDIM step at a time — "
                    "on PROPS table-top scenes (10 YCB objects), with the centre-heatmap head of the PROPS paper.")
        # the sidebar's own toggle is a small tab at the screen's edge, easy to miss on a phone (it starts closed there)
        walkthrough_btn = gr.Button("Walkthrough (show / hide)", size="sm", variant="secondary",
                                    elem_id="walkthrough-open")
        with gr.Sidebar(position="right", open=True, width=320, label="Walkthrough", elem_id="walkthrough-sidebar"):
            gr.Markdown(WALKTHROUGH, elem_id="walkthrough")
        with gr.Row(equal_height=False, elem_id="main-row"):
            with gr.Column(scale=1, min_width=330, elem_id="controls-col"):
                image_in = SafeImage(label="Image (upload, webcam, paste)", type="filepath",
                                     sources=["upload", "webcam", "clipboard"], height=260, elem_id="input-image",
                                     webcam_options=gr.WebcamOptions(mirror=False))
                examples = explorer.example_paths()
                if examples:
                    gr.Examples(examples=[[str(p)] for p in examples], inputs=[image_in], label="Example scenes",
                                examples_per_page=12, elem_id="examples")
                # on a phone the presets follow the results, with the Sampler they set (phone-late)
                with gr.Row(elem_classes=["compact-row", "phone-late"]):
                    teach_btn = gr.Button(TEACHING.name, size="sm", elem_id="preset-teaching")
                    paper_btn = gr.Button(PAPER.name, size="sm", elem_id="preset-paper")
                gr.Markdown(f"**Teaching** (the default): {TEACHING.note}. **Paper**: {PAPER.note}.",
                            elem_id="preset-note", elem_classes="phone-late")
                detect_btn = gr.Button("Detect", variant="primary", elem_id="detect-btn")
                with gr.Accordion("Ground truth (optional)", open=False, elem_classes="phone-late"):
                    gt_file = gr.File(label="PROPS or COCO annotation JSON", file_types=[".json"], type="filepath",
                                      elem_id="gt-file")
                    use_example_gt = gr.Checkbox(value=True, label="Use an example's own annotations",
                                                 info="examples/props.json holds the example scenes' boxes",
                                                 elem_id="use-example-gt")
                with gr.Accordion("Model", open=False, elem_classes="phone-late"):
                    checkpoint = gr.Dropdown(choices=checkpoints, value=default_ckpt, label="Checkpoint",
                                             info="*.safetensors in checkpoints/", elem_id="checkpoint")
                    ckpt_upload = gr.File(label=f"…or upload a .safetensors (≤ {MAX_CHECKPOINT_BYTES >> 20} MB)",
                                          file_types=[".safetensors"], type="filepath",
                                          elem_id="checkpoint-upload")
                    model_info = gr.Markdown(elem_id="model-info")
                with gr.Accordion("Sampler", open=True, elem_classes="phone-late"):
                    steps = gr.Slider(1, 20, value=TEACHING.steps, step=1, label="DDIM steps", elem_id="steps",
                                      info="how many times the boxes are denoised")
                    proposals = gr.Slider(1, 500, value=TEACHING.proposals, step=1,
                                          label="Proposals (random boxes)", elem_id="proposals",
                                          info="random boxes the sampler starts from")
                    with gr.Row(elem_classes="compact-row"):
                        eta = gr.Slider(0, 1, value=TEACHING.eta, step=0.05, label="eta (DDIM noise)",
                                        elem_id="eta", info="0: deterministic steps; 1: fresh noise each step")
                        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed",
                                         info="picks the starting noise")
                    with gr.Row(elem_classes="compact-row"):
                        renewal = gr.Checkbox(value=TEACHING.renewal, label="Box renewal", elem_id="renewal",
                                              min_width=100, info="replace low scorers by new noise")
                        ensemble = gr.Checkbox(value=True, label="Step ensemble", elem_id="ensemble", min_width=100,
                                               info="pool every step's boxes")
                        nms = gr.Checkbox(value=True, label="NMS", elem_id="nms", min_width=60,
                                          info="remove duplicates")
                    with gr.Row(elem_classes="compact-row"):
                        renewal_threshold = gr.Slider(0, 1, value=0.5, step=0.05, label="Renewal threshold",
                                                      elem_id="renewal-threshold",
                                                      info="boxes scoring below it are renewed")
                        nms_iou = gr.Slider(0.1, 0.95, value=0.5, step=0.05, label="NMS IoU", elem_id="nms-iou",
                                            info="overlap above which the weaker box is dropped")
                    heatmap_init = gr.Slider(0, 1, value=0.0, step=0.05, label="Heatmap-guided proposals (ratio)",
                                             elem_id="heatmap-init", visible=has_heatmap,
                                             info="up to this share of starting boxes sit on heatmap peaks (one per peak, sized from its blob)")
                with gr.Accordion("Display", open=True, elem_classes="phone-late"):
                    score_threshold = gr.Slider(0, 1, value=0.3, step=0.05, label="Score threshold",
                                                elem_id="score-threshold",
                                                info="boxes below it are drawn thin and unlabelled")
                    with gr.Accordion(f"Classes shown ({len(class_names)})", open=False,
                                      visible=len(class_names) > 1) as classes_box:
                        classes = gr.CheckboxGroup(choices=class_names, value=class_names, show_label=False,
                                                   label="Classes shown", elem_id="classes",
                                                   info="draw only these classes")
                    with gr.Row(elem_classes="compact-row"):
                        show_labels = gr.Checkbox(value=True, label="Labels", elem_id="show-labels", min_width=80,
                                                  info="class names on the top boxes")
                        show_scores = gr.Checkbox(value=True, label="Scores", elem_id="show-scores", min_width=80,
                                                  info="scores next to them")
                    with gr.Row(elem_classes="compact-row"):
                        show_gt = gr.Checkbox(value=True, label="Ground truth", elem_id="show-gt", min_width=80,
                                              info="dashed black boxes")
                        show_tracks = gr.Checkbox(value=True, label="Centre tracks", elem_id="show-tracks",
                                                  min_width=80, info="paths of the surviving boxes")
                    with gr.Row(elem_classes="compact-row"):
                        line_width = gr.Slider(0.5, 6, value=2, step=0.5, label="Line width", elem_id="line-width",
                                               info="of the boxes, in pixels")
                        # A slider needs two values: with one head stage there is nothing to choose, so it hides.
                        stage = gr.Slider(1, max(stages, 2), value=stages, step=1, label="Head stage",
                                          elem_id="stage", visible=stages > 1,
                                          info="which refinement stage's boxes are shown after each step")

            with gr.Column(scale=3, min_width=330, elem_id="views-col"):
                status = gr.Markdown("Pick an example scene or upload an image.", elem_id="status")
                with gr.Tabs(elem_id="views"):
                    with gr.Tab("Denoising", id="denoise"):
                        with gr.Row(elem_id="play-row"):
                            play_btn = gr.Button("▶ Play", size="sm", elem_id="play-btn", scale=0, min_width=110)
                            gr.Markdown("Play walks the slider from the noise (step **1**) to the **final** detections; "
                                        "or drag the slider under the image.", elem_id="play-note")
                        # filled in the browser from the figure (PAGE_JS): layer toggles and the class-colour key
                        gr.HTML("", elem_id="denoise-legend", padding=False)
                        denoise_plot = gr.Plot(show_label=False, elem_id="denoise-plot")
                        stats_plot = gr.Plot(show_label=False, elem_id="stats-plot")
                    with gr.Tab("Convergence", id="convergence"):
                        gr.Markdown("The best proposals followed from pure noise to their final box: the noisy box "
                                    "**x_t** fed to each step (faint early, solid late) and, beside it (below it on "
                                    "a phone), its IoU with the final box step by step. With the **teaching** "
                                    "setting the boxes walk onto the objects; with the **paper** setting most slots "
                                    "are renewed (grey lives ending in ✕) and the kept boxes jump in the last steps. "
                                    "Click legend entries to hide layers.", elem_id="convergence-note")
                        convergence_plot = gr.Plot(show_label=False, elem_id="convergence-plot")
                    with gr.Tab("Heatmap", id="heatmap") as heat_tab:
                        with gr.Row():
                            heat_class = gr.Dropdown(choices=class_options, value=MAX_CLASSES_OPTION,
                                                     label="Class", elem_id="heat-class", allow_custom_value=True,
                                                     info="one class's map, or the maximum over classes")
                            heat_mode = gr.Radio(["side by side", "overlay on image"], value="side by side",
                                                 label="Layout", elem_id="heat-mode",
                                                 info="three panels, or one layer over the image")
                        heat_plot = gr.Plot(show_label=False, elem_id="heatmap-plot")
                    with gr.Tab("Target", id="target") as target_tab:
                        gr.Markdown("The training target of the heatmap head: a Gaussian at each box centre whose "
                                    "radius (its sigma, the dotted circle) is `r = max(min_radius, rho · min(w, h))` "
                                    "heatmap cells. Move the sliders under the map.")
                        with gr.Row():
                            target_class = gr.Dropdown(choices=class_options, value=MAX_CLASSES_OPTION,
                                                       label="Class", elem_id="target-class", allow_custom_value=True,
                                                       info="one class's target, or the maximum over classes",
                                                       min_width=TARGET_CONTROL_WIDTH)
                            profile_box = gr.Dropdown(choices=[], label="Profile through box", elem_id="profile-box",
                                                      allow_custom_value=True, min_width=TARGET_CONTROL_WIDTH,
                                                      info="the chart below cuts through the shown map at this box's "
                                                           "centre")
                        target_plot = gr.Plot(show_label=False, elem_id="target-plot")
                        # under the map, right below its profile chart: above the map, a laptop never showed the
                        # sliders and the profile on one screen (the map is ~780 px tall). TARGET_CONTROL_WIDTH: side
                        # by side on a laptop, one per line on a phone (side by side there, the labels wrapped
                        # unevenly and the dropdown values were cut; fresh-user trial)
                        with gr.Row():
                            min_radius = gr.Slider(*MIN_RADIUS_RANGE, value=cfg.min_radius if cfg else 4,
                                                   step=MIN_RADIUS_STEP, min_width=TARGET_CONTROL_WIDTH,
                                                   label="min_radius (cells)", elem_id="min-radius",
                                                   info="smallest gaussian sigma, in heatmap cells")
                            rho = gr.Slider(*RHO_RANGE, value=cfg.rho if cfg else 0.5, step=RHO_STEP, label="rho",
                                            elem_id="rho", info="sigma as a fraction of the box's shorter side",
                                            min_width=TARGET_CONTROL_WIDTH)
                    with gr.Tab("Results", id="results"):
                        metrics_md = gr.Markdown(elem_id="metrics")
                        results_plot = gr.Plot(show_label=False, elem_id="results-plot")
                        det_table = gr.Dataframe(label="Detections", interactive=False, elem_id="detections-table",
                                                 max_height=360)
                        downloads = gr.File(label="Downloads: COCO JSON, trajectory JSON and NPZ", file_count="multiple",
                                            interactive=False, elem_id="downloads")
                    with gr.Tab("A/B", id="compare"):
                        gr.Markdown("Run **A** (the settings of the Detect panel) against **B** (the same with the "
                                    "changes below); one slider scrubs both.")
                        with gr.Row():
                            seed_b = gr.Number(value=1, precision=0, minimum=0, label="B: seed", elem_id="seed-b",
                                               info="B's starting noise")
                            steps_b = gr.Slider(1, 20, value=PAPER.steps, step=1, label="B: DDIM steps",
                                                elem_id="steps-b", info="B's number of steps")
                            eta_b = gr.Slider(0, 1, value=PAPER.eta, step=0.05, label="B: eta", elem_id="eta-b",
                                              info="B's DDIM noise")
                        with gr.Row():
                            heatmap_b = gr.Slider(0, 1, value=0.0, step=0.05, label="B: heatmap-guided ratio",
                                                  elem_id="heatmap-b", visible=has_heatmap,
                                                  info="B's share of starting boxes on heatmap peaks (one per peak)")
                            renewal_b = gr.Checkbox(value=PAPER.renewal, label="B: box renewal", elem_id="renewal-b",
                                                    info="B renews low scorers")
                            compare_btn = gr.Button("Run A/B", elem_id="compare-btn")
                        compare_md = gr.Markdown(elem_id="compare-summary")
                        compare_plot = gr.Plot(show_label=False, elem_id="compare-plot")
                    with gr.Tab("Training", id="training"):
                        training_md = gr.Markdown(elem_id="training-summary")
                        training_plot = gr.Plot(show_label=False, elem_id="training-plot")
                        metrics_upload = gr.File(label="…or upload a run's metrics file (.jsonl)",
                                                 file_types=[".jsonl", ".json", ".txt"], type="filepath",
                                                 elem_id="metrics-upload")

        # Hidden: the stored run (travels as a file, so cached examples keep it), the denoising slider's position
        # (filled in by the browser before a redraw) and the /predict API's outputs.
        traj_store = gr.File(visible=False, elem_id="traj-store")
        position = gr.Number(value=None, visible=False, elem_id="position")
        api_json = gr.JSON(visible=False)
        api_file = gr.File(visible=False)
        api_btn = gr.Button(visible=False)
        api_detect_btn = gr.Button(visible=False)

        sampler = [proposals, steps, eta, seed, renewal, renewal_threshold, ensemble, nms, nms_iou, heatmap_init]
        display = [score_threshold, classes, show_labels, show_scores, line_width, stage, show_gt, show_tracks]
        image_gt = [image_in, gt_file, use_example_gt]
        model = [checkpoint, ckpt_upload]
        detect_inputs = image_gt + model + sampler + display + [min_radius, rho, heat_class, heat_mode, target_class]
        detect_outputs = [status, denoise_plot, stats_plot, heat_plot, target_plot, results_plot, det_table,
                          metrics_md, downloads, traj_store, profile_box, convergence_plot]
        url_example = gr.Textbox(visible=False, elem_id="url-example")  # the example in the image, for the URL
        url_inputs = [url_example, steps, eta, renewal, proposals, seed, score_threshold, line_width, show_labels,
                      show_scores, show_gt, show_tracks, stage]

        def then_url(event: Any) -> Any:
            """After a run: which example the image is (none for an upload), then the address follows the view."""
            return event.then(explorer.url_example, image_in, url_example, api_visibility="private",
                              show_progress="hidden").then(None, url_inputs, None, js=URL_JS)
        model_event = {"concurrency_limit": 1, "concurrency_id": "model"}
        cheap = {"concurrency_limit": None, "show_progress": "hidden", "trigger_mode": "always_last"}
        # A page run shows its progress in the status line only: on every output, Gradio blanked the figures for the
        # whole run (a white card with a spinner), so the previous result vanished seconds before the new one came.
        page_run = {**model_event, "show_progress_on": [status]}

        # The page's Detect keeps the previous views when a run fails (message in the status line); API clients
        # of /detect get the error itself.
        page_detect_inputs = detect_inputs + [position]  # + Gradio's progress tracker (see Explorer.detect_or_explain)
        then_url(detect_btn.click(explorer.detect_or_explain, page_detect_inputs, detect_outputs,
                                  api_visibility="private", **page_run))
        api_detect_btn.click(explorer.detect, detect_inputs, detect_outputs, api_name="detect", **model_event)
        then_url(image_in.change(explorer.detect_or_explain, page_detect_inputs, detect_outputs,
                                 api_visibility="private", **page_run).then(
            lambda: None, None, position, api_visibility="private", show_progress="hidden"))
        api_btn.click(explorer.predict_api, [image_in, checkpoint, steps, seed, proposals, eta, heatmap_init,
                                             score_threshold], [api_json, api_file], api_name="predict",
                      **model_event)
        preset_outputs = [steps, eta, renewal, proposals]
        # the presets change the sampler settings, so the address follows them too (it kept the previous ones)
        then_url(teach_btn.click(explorer.teaching_preset, model, preset_outputs, api_visibility="private",
                                 show_progress="hidden").then(
            explorer.detect_or_explain, page_detect_inputs, detect_outputs, api_visibility="private", **page_run))
        then_url(paper_btn.click(explorer.paper_preset, model, preset_outputs, api_visibility="private",
                                 show_progress="hidden").then(
            explorer.detect_or_explain, page_detect_inputs, detect_outputs, api_visibility="private", **page_run))
        walkthrough_btn.click(None, None, None, js=WALKTHROUGH_JS)
        play_btn.click(None, None, None,
                       js=PLAY_JS.replace("TWEEN_MS", str(TWEEN_MS)).replace("STAGE_MS", str(STAGE_MS))
                       .replace("HOLD_MS", str(HOLD_MS)))

        render_inputs = [traj_store] + image_gt + display + [position]
        render_outputs = [status, denoise_plot, stats_plot, results_plot, det_table, metrics_md, convergence_plot]
        heat_inputs = [traj_store] + image_gt + [heat_class, heat_mode, min_radius, rho, score_threshold]
        target_inputs = image_gt + [traj_store] + model + [min_radius, rho, target_class, profile_box,
                                                            score_threshold]
        boxes_inputs = image_gt + [traj_store] + model + [min_radius, rho, target_class, score_threshold]

        frame_drawn = gr.Checkbox(False, visible=False)  # set by LIVE_SLIDER_JS: the page drew this move itself
        keep_position = KEEP_POSITION_JS.replace("N_INPUTS", str(len(render_inputs)))
        # .input, not .release: arrow keys and the number box move a slider without a release (the fresh-user trial
        # pressed arrow keys on Head stage and the figure stayed); always_last keeps a drag to one redraw at a time.
        gr.on([score_threshold.input, classes.input, show_labels.input, show_scores.input,
               line_width.input, stage.input, show_gt.input, show_tracks.input],
              explorer.render, render_inputs, render_outputs, api_name="render", js=keep_position, **cheap).then(
            None, url_inputs, None, js=URL_JS)
        gt_event = gr.on([gt_file.change, use_example_gt.input], explorer.render, render_inputs, render_outputs,
                         api_visibility="private", js=keep_position, **cheap)
        gt_event.then(explorer.target_boxes_update, boxes_inputs, [target_plot, profile_box],
                      api_visibility="private", **cheap)
        gt_event.then(explorer.render_heatmap, heat_inputs, heat_plot, api_visibility="private", **cheap)
        score_threshold.input(explorer.target_boxes_update, boxes_inputs, [target_plot, profile_box],
                              api_visibility="private", **cheap)
        # The heatmap view is redrawn when it is shown, not on every target-slider move (it is 200 kB).
        gr.on([heat_class.change, heat_mode.change, heat_tab.select], explorer.render_heatmap, heat_inputs, heat_plot,
              api_name="heatmap", **cheap)
        # always_last (in ``cheap``): moves made while a redraw is in flight end with the figure of the last value
        # (Gradio's default for this event dropped them, leaving a figure behind the slider after quick arrow-key
        # presses). Queued, as every cheap event: an out-of-range value typed into a slider's box fails in Gradio's
        # own check, and only a queued event shows its message (unqueued: an HTTP 500 and nothing on the page).
        profile_box.input(explorer.render_target, target_inputs, target_plot, api_name="target", **cheap)
        # another class: the profile follows it to one of its boxes when it was on a box of another class
        target_class.input(explorer.render_target_class, target_inputs, [target_plot, profile_box],
                           api_visibility="private", **cheap)
        # A move of rho or min_radius is drawn by the page from the figure's frames of that slider when it has them
        # (the server then sends nothing); otherwise the figure comes with them. Opening the tab fetches the figure
        # with both sliders' frames, so the first move is drawn by the page too.
        target_tab.select(explorer.render_target_opened, target_inputs, target_plot, api_visibility="private",
                          **cheap)
        for control, name, handler in ((rho, "rho", explorer.render_target_rho),
                                       (min_radius, "min_radius", explorer.render_target_min_radius)):
            control.input(handler, target_inputs + [frame_drawn], target_plot, api_visibility="private",
                          js=LIVE_SLIDER_JS.replace("N_INPUTS", str(len(target_inputs) + 1))
                          .replace("VALUE_INDEX", str(target_inputs.index(control))).replace("SLIDER", name),
                          **cheap)

        compare_btn.click(explorer.compare, image_gt + model + sampler + display + [seed_b, steps_b, eta_b,
                                                                                     heatmap_b, renewal_b],
                          [compare_plot, compare_md], api_name="compare", **model_event)

        info_outputs = [model_info, classes, stage, proposals, heatmap_init, heat_class, target_class, min_radius, rho,
                        classes_box, heatmap_b]
        gr.on([checkpoint.change, ckpt_upload.change], explorer.checkpoint_info, model, info_outputs,
              api_name="checkpoint_info", **cheap)
        gr.on([metrics_upload.change, checkpoint.change], explorer.training, [metrics_upload, checkpoint],
              [training_plot, training_md], api_name="training_curves", **cheap)
        demo.load(explorer.checkpoint_dropdown, checkpoint, checkpoint, api_visibility="private",
                  show_progress="hidden")
        demo.load(explorer.checkpoint_info, model, info_outputs, api_visibility="private", show_progress="hidden")
        demo.load(explorer.training, [metrics_upload, checkpoint], [training_plot, training_md],
                  api_visibility="private", show_progress="hidden")
        # First view: the first example goes into the image, whose change event runs it (a cache hit when
        # ``Explorer.warm_first_view`` ran at start), so the page opens with detections drawn.
        # A shared link (``?example=...&steps=...&pos=...``) sets the image, the controls and the slider position
        # first; without one the first example opens with the defaults.
        demo.load(explorer.from_url, None, [image_in, steps, eta, renewal, proposals, seed, score_threshold, position,
                                            line_width, show_labels, show_scores, show_gt, show_tracks, stage],
                  api_visibility="private", show_progress="hidden")
        demo.load(None, None, None, js=PAGE_JS)
    return demo


def launch(demo: gr.Blocks | None = None, explorer: Explorer | None = None, **overrides: Any) -> gr.Blocks:
    """Run the first example (so the first page view is a cache hit), queue and launch with the app's limits. Server
    name and port come from GRADIO_SERVER_NAME / _PORT (Spaces sets them) unless passed; only the examples folder
    is served from disk besides Gradio's own cache."""
    explorer = explorer or Explorer()
    demo = demo or build_demo(explorer)
    seconds = explorer.warm_first_view()  # the page opens with the first example already detected
    if seconds is not None:
        logging.getLogger("diffdet.app").info("first view prepared in %.1f s", seconds)
    demo.queue(max_size=64, default_concurrency_limit=4)
    options: dict[str, Any] = {
        "allowed_paths": [str(explorer.examples_dir)] if explorer.examples_dir.is_dir() else [],
        "max_file_size": MAX_CHECKPOINT_BYTES,
        "ssr_mode": False,
        # Gradio 6 records every event's inputs and outputs in the browser's localStorage by default; with
        # figures of a few hundred kB that cost ~50 ms per slider move (measured) and fills the quota.
        "run_history": False,
        "theme": gr.themes.Soft(primary_hue="indigo"),
        "css": CSS,
        "server_name": os.environ.get("GRADIO_SERVER_NAME") or None,
        "server_port": int(os.environ["GRADIO_SERVER_PORT"]) if os.environ.get("GRADIO_SERVER_PORT") else None,
    }
    options.update(overrides)
    demo.launch(**options)
    return demo


__all__ = ["build_demo", "launch", "SafeImage", "MAX_IMAGE_BYTES", "MAX_STEPS", "MAX_PROPOSALS"]
