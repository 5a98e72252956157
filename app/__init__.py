"""DiffusionDet Explorer, the browser app: ``python app.py`` (or ``from app.ui import launch; launch()``).

Modules: ``views/`` (one module per view — denoising, heatmap, target, results, compare, training — each with its
figure builders and its handlers side by side), ``plotting`` (figure primitives the views share), ``controls``
(request bounds, control values, display options, the error guard), ``explorer`` (``Explorer``: shared state,
checkpoints, examples, ground truth, running the detector; it mixes in every view's handlers), ``inputs`` (upload
checks, annotation and metrics parsing), ``evaluation`` (IoU / TP-FP-FN / AP for one image), ``runner`` (model cache,
``@spaces.GPU``) and ``ui`` (the Blocks layout and wiring only).
"""
