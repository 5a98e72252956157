"""PROPS look-alike scenes rendered from the YCB meshes: ``python -m diffdet render --ycb DIR --out DIR --num N``.

Split by concern, each module readable on its own:
- ``scene``: scene sampling, pure functions of an ``np.random.Generator`` (camera, object and distractor placement,
  poses, lights, camera-effect parameters); scene ``i`` of a split depends only on ``(seed, split, i)``;
- ``textures``: procedural textures (table tops: wood with planks, joints and knots, laminate, stone, paint;
  floor, walls; distractor surfaces: plain colours, patterns, packaging);
- ``assets``: the YCB meshes and the procedural distractor shapes (primitives and household shapes: bowls,
  bottles, bricks, banana-like curves, tools);
- ``renderer``: pyrender (headless EGL), the room, table shadows, segmentation passes, visible and amodal boxes;
- ``effects``: camera effects (exposure, colour, soft focus, defocus, motion blur, noise, low resolution);
- ``dataset``: the PROPS-format writer and the command line; ``stats``: box statistics beside real PROPS photos.
"""
from diffdet.render.assets import (DISTRACTOR_SHAPES, ObjectAsset, distractor_asset, distractor_mesh, find_ycb_meshes,
                                   load_asset)
from diffdet.render.dataset import cli, render_dataset
from diffdet.render.effects import camera_effects
from diffdet.render.renderer import BOX_MODES, EGL_HELP, SceneRenderer, _import_pyrender
from diffdet.render.scene import (POOL_SIZES, PlacedObject, SceneSpec, cast_to_table, look_at, project,
                                  sample_scene, scene_rng)
from diffdet.render.stats import REAL_PROPS, box_statistics, format_comparison
from diffdet.render.textures import distractor_texture, packaging_texture, table_texture, wood_texture

__all__ = ["BOX_MODES", "DISTRACTOR_SHAPES", "distractor_mesh", "distractor_texture", "table_texture", "EGL_HELP", "POOL_SIZES", "REAL_PROPS", "ObjectAsset", "PlacedObject", "SceneRenderer",
           "SceneSpec", "_import_pyrender", "box_statistics", "camera_effects", "cast_to_table", "cli",
           "distractor_asset", "find_ycb_meshes", "format_comparison", "load_asset", "look_at",
           "packaging_texture", "project", "render_dataset", "sample_scene", "scene_rng", "wood_texture"]
