"""diffdet: DiffusionDet with the PROPS heatmap head, batched DDIM sampling with full trajectories."""
from diffdet.config import COCO_CLASSES, PRESETS, PROPS_CLASSES, DiffDetConfig, get_preset

__all__ = ["COCO_CLASSES", "PRESETS", "PROPS_CLASSES", "DiffDetConfig", "get_preset"]
