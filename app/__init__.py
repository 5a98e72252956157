"""DiffusionDet Explorer, the browser app: ``python app.py`` (or ``from app.ui import launch; launch()``).

Modules: ``inputs`` (upload checks, annotation and metrics parsing), ``figures`` (pure Plotly builders),
``evaluation`` (IoU / TP-FP-FN / AP for one image), ``runner`` (model cache, ``@spaces.GPU``), ``handlers`` (every
event handler, callable without a browser) and ``ui`` (the Blocks layout and wiring).
"""
