"""Scene sampling for the PROPS look-alike renders: pure functions of an ``np.random.Generator``.

The distributions follow what was measured on real PROPS photographs (issue "Real photos", see docs/sim2real.md):
a close camera 0.45-0.66 m from a point on the table, 40-62 degrees above it, so the table top fills the frame and
objects appear at sqrt(box area) ~ 64-170 px; objects spread over the whole frame (positions are drawn uniformly
in the image and cast onto the table, a few beyond the border so they are cut by it), every resting pose (boxes on
any face, cans and bottles lying, mugs upside down), usually all ten classes, and household distractors that are
no PROPS object.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import cv2
import numpy as np

from diffdet.render.assets import ObjectAsset

# scene
OBJECT_COUNT_WEIGHTS = {6: 0.03, 7: 0.03, 8: 0.06, 9: 0.10, 10: 0.78}  # PROPS: all ten objects in most images
DISTRACTOR_COUNT_WEIGHTS = (0.1, 0.12, 0.16, 0.16, 0.14, 0.12, 0.1, 0.1)   # 0..7 non-PROPS objects per scene
TABLE_RADIUS = (0.6, 0.95)                    # metres; the close camera sees only part of it
TABLE_THICKNESS = 0.03
TABLE_HEIGHT = (0.70, 0.78)                   # table top above the floor, for the ray-cast room
FOOTPRINT_CELL = 0.0025                       # metres per cell of the no-interpenetration occupancy grid
FOOTPRINT_MARGIN = 0.002                      # metres kept between footprints
PLACEMENT_TRIES = 150
# where object centres are drawn, as fractions of the image (real PROPS: box centres x 50-545, y 75-380 px at
# 640x480, 5th-95th percentile); a little beyond the left/right border so some objects are cut by it
PLACE_U = (0.0, 0.97)
PLACE_V = (0.14, 0.86)
# camera (real PROPS: close, oblique, the table top fills the frame)
DISTANCE = (0.45, 0.66)                       # metres from the look-at point; tomato soup can ~64x111 px at 0.52 m
ELEVATION_DEG = (40.0, 62.0)
FOCAL_PX = (460.0, 540.0)                     # at 640 px wide: 61-70 degrees horizontal field of view
POOL_SIZES = {"train": 24, "val": 8}          # procedural table/floor/wall textures per pool
DISTRACTOR_POOL_SIZE = 40                     # distractor shapes per pool

# Resting poses per class: (weight, rotation applied to the upright mesh, spin axis or None). A spin axis is the
# object's own symmetry axis (cans, marker): a random spin about it shows other parts of the label.
_RX90, _RXm90 = ("x", 90.0), ("x", -90.0)
_RY90, _RYm90 = ("y", 90.0), ("y", -90.0)
_FLIP = ("x", 180.0)
_UP = ("x", 0.0)
_BOX_POSES = ((0.4, _UP, None), (0.12, _RX90, None), (0.12, _RXm90, None), (0.12, _RY90, None),
              (0.12, _RYm90, None), (0.12, _FLIP, None))
_CAN_POSES = ((0.55, _UP, "z"), (0.1, _FLIP, "z"), (0.35, _RX90, "z"))
RESTING_POSES: dict[str, tuple[tuple[float, tuple[str, float], str | None], ...]] = {
    "master_chef_can": _CAN_POSES,
    "tomato_soup_can": _CAN_POSES,
    "tuna_fish_can": ((0.6, _UP, "z"), (0.2, _FLIP, "z"), (0.2, _RX90, "z")),
    "cracker_box": _BOX_POSES,
    "sugar_box": _BOX_POSES,
    "gelatin_box": _BOX_POSES,
    "potted_meat_can": _BOX_POSES,
    "mustard_bottle": ((0.5, _UP, None), (0.2, _RX90, None), (0.2, _RXm90, None), (0.1, _RY90, None)),
    "mug": ((0.5, _UP, None), (0.25, _FLIP, None), (0.125, _RX90, None), (0.125, _RY90, None)),
    "large_marker": ((0.85, _UP, "y"), (0.15, _RX90, "y")),   # the YCB marker mesh lies along y; RX90 stands it up
}
_DEFAULT_POSES = ((0.5, _UP, None), (0.2, _FLIP, None), (0.15, _RX90, None), (0.15, _RY90, None))
# Distractors by kind (the last part of their name, see ``assets.distractor_asset``): household shapes rest the way
# their real counterparts do (bowls mostly open side up, bananas and tools lying flat as built).
DISTRACTOR_POSES: dict[str, tuple[tuple[float, tuple[str, float], str | None], ...]] = {
    "bowl": ((0.8, _UP, None), (0.2, _FLIP, None)),
    "bottle": ((0.65, _UP, None), (0.35, _RX90, "z")),
    "brick": _BOX_POSES,
    "banana": ((0.85, _UP, None), (0.15, _FLIP, None)),
    "tool": ((0.75, _UP, None), (0.25, _FLIP, None)),
}


def _rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about a coordinate axis."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def look_at(eye: np.ndarray, target: np.ndarray, roll_deg: float = 0.0) -> np.ndarray:
    """4x4 camera-to-world pose, OpenGL convention (camera looks down -z, y up), world z up."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, up, -forward], axis=1) @ _rotation("z", roll_deg)
    pose[:3, 3] = eye
    return pose


@dataclass
class PlacedObject:
    name: str
    pose: np.ndarray          # (4, 4) object-to-world, metres


@dataclass
class SceneSpec:
    """Everything needed to render one image; produced by ``sample_scene``."""
    objects: list[PlacedObject]
    table_radius: float
    table_texture: int        # index into the split's table-texture pool
    table_tint: np.ndarray    # (3,) multiplies the wood colour
    table_roughness: float
    table_yaw_deg: float
    camera_pose: np.ndarray   # (4, 4) camera-to-world, OpenGL convention
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy in pixels
    lights: list[dict[str, Any]]
    ambient: np.ndarray       # (3,)
    room: dict[str, Any]      # floor/wall textures and geometry for the background
    post: dict[str, Any]      # camera effects
    width: int = 640
    height: int = 480
    distractors: list[PlacedObject] = field(default_factory=list)  # non-PROPS objects, never annotated


def _kelvin_tint(kelvin: float) -> np.ndarray:
    """Mild RGB tint of a light of this colour temperature (a camera's white balance removes most of it)."""
    warm, neutral, cool = np.array([1.0, 0.82, 0.62]), np.ones(3), np.array([0.88, 0.94, 1.0])
    if kelvin < 5500:
        a = (5500 - kelvin) / 2800
        return neutral * (1 - a) + warm * a
    return neutral + (cool - neutral) * min((kelvin - 5500) / 1500, 1.0)


def project(points: np.ndarray, camera_pose: np.ndarray, intrinsics: tuple[float, float, float, float]
            ) -> np.ndarray:
    """World points (P, 3) -> pixel coordinates (P, 2): x right, y down, pixel (i, j) covers [i, i + 1) x [j, j + 1).

    Matches pyrender's IntrinsicsCamera; points must lie in front of the camera.
    """
    fx, fy, cx, cy = intrinsics
    cam = (np.linalg.inv(camera_pose) @ np.c_[points, np.ones(len(points))].T).T[:, :3]
    depth = -cam[:, 2]
    return np.stack([fx * cam[:, 0] / depth + cx, cy - fy * cam[:, 1] / depth], axis=1)


def cast_to_table(uv: np.ndarray, camera_pose: np.ndarray, intrinsics: tuple[float, float, float, float]
                  ) -> np.ndarray:
    """Pixels (P, 2) -> where their rays meet the table plane z = 0, (P, 3) metres; NaN for rays that miss it."""
    fx, fy, cx, cy = intrinsics
    rays = np.stack([(uv[:, 0] - cx) / fx, -(uv[:, 1] - cy) / fy, -np.ones(len(uv))], 1) @ camera_pose[:3, :3].T
    eye = camera_pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(rays[:, 2] < -1e-6, -eye[2] / rays[:, 2], np.nan)
    return eye + rays * t[:, None]


def _footprint(asset: ObjectAsset, rot: np.ndarray, xy: np.ndarray, grid: int, cell: float, margin: float
               ) -> np.ndarray:
    """Occupancy mask (grid x grid, centred on the table centre) of the object's convex footprint."""
    pts = (asset.hull @ rot.T)[:, :2] + xy
    pix = np.round((pts + margin * np.sign(pts - pts.mean(0))) / cell + grid / 2).astype(np.int32)
    mask = np.zeros((grid, grid), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(pix), 1)
    return mask


def _choose_rest_rotation(rng: np.random.Generator, name: str) -> np.ndarray:
    """A resting orientation (before the yaw about the table normal)."""
    kind = name.rsplit("_", 1)[-1] if "distractor_" in name else None
    poses = RESTING_POSES.get(name) or DISTRACTOR_POSES.get(kind, _DEFAULT_POSES)
    weights = np.array([p[0] for p in poses])
    _, (axis, deg), spin_axis = poses[rng.choice(len(poses), p=weights / weights.sum())]
    spin = _rotation(spin_axis, rng.uniform(0, 360)) if spin_axis else np.eye(3)
    return _rotation(axis, deg) @ spin


def sample_camera(rng: np.random.Generator, table_radius: float, width: int, height: int
                  ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A PROPS-like close, oblique viewpoint aimed at a point of the table top."""
    scale = width / 640.0
    target = np.r_[rng.uniform(-0.25, 0.25, 2) * table_radius, rng.uniform(0.0, 0.04)]
    dist = rng.uniform(*DISTANCE)
    elev = np.radians(rng.uniform(*ELEVATION_DEG))
    azim = rng.uniform(0, 2 * np.pi)
    eye = target + dist * np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    pose = look_at(eye, target, roll_deg=rng.normal(0, 3.0))
    f = rng.uniform(*FOCAL_PX) * scale
    intr = (f, f, width / 2 + rng.normal(0, 3) * scale, height / 2 + rng.normal(0, 3) * scale)
    return pose, intr


def place_objects(rng: np.random.Generator, assets: Mapping[str, ObjectAsset], names: list[str],
                  table_radius: float, camera_pose: np.ndarray, intrinsics: tuple[float, float, float, float],
                  width: int, height: int, occupied: np.ndarray | None = None,
                  place_v: tuple[float, float] = PLACE_V) -> tuple[list[PlacedObject], np.ndarray]:
    """Place ``names`` in resting poses at positions drawn uniformly in the image and cast onto the table, without
    interpenetration (rejection sampling of convex footprints on an occupancy grid). Larger objects go first so
    the small ones fill gaps. Returns the placed objects and the updated occupancy grid; objects that find no
    room in ``PLACEMENT_TRIES`` draws are left out.
    """
    grid = int(np.ceil(2 * table_radius / FOOTPRINT_CELL))
    occupied = np.zeros((grid, grid), np.uint8) if occupied is None else occupied
    order = sorted(names, key=lambda n: -float(np.prod(np.ptp(assets[n].hull[:, :2], axis=0))))
    placed: list[PlacedObject] = []
    for name in order:
        asset = assets[name]
        rest = _choose_rest_rotation(rng, name)
        for _ in range(PLACEMENT_TRIES):
            uv = np.array([[rng.uniform(*PLACE_U) * width, rng.uniform(*place_v) * height]])
            point = cast_to_table(uv, camera_pose, intrinsics)[0]
            if not np.all(np.isfinite(point)):
                continue
            rot = _rotation("z", rng.uniform(0, 360)) @ rest
            pts = asset.hull @ rot.T
            xy = point[:2]
            if np.max(np.linalg.norm(pts[:, :2] + xy, axis=1)) > table_radius - 0.01:
                continue
            mask = _footprint(asset, rot, xy, grid, FOOTPRINT_CELL, FOOTPRINT_MARGIN)
            if np.any(mask & occupied):
                continue
            occupied |= mask
            pose = np.eye(4)
            pose[:3, :3] = rot
            pose[:3, 3] = [xy[0], xy[1], -pts[:, 2].min() + 2e-4]
            placed.append(PlacedObject(name, pose))
            break
    return placed, occupied


def sample_lights(rng: np.random.Generator) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Indoor light: one shadow-casting key light (ceiling lamp / window), sometimes a point light, ambient fill.

    Every extra light costs llvmpipe about as much as the whole unlit pass, so only 15% of scenes get a point
    light; ``camera_effects`` adds a cheap low-frequency illumination falloff to every image instead.
    """
    kelvin = rng.uniform(2800, 7000)
    tint = _kelvin_tint(kelvin)
    elev, azim = np.radians(rng.uniform(40, 85)), rng.uniform(0, 2 * np.pi)
    direction = -np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    lights = [{"type": "directional", "direction": direction, "color": tint * rng.uniform(0.95, 1.05, 3),
               "intensity": rng.uniform(2.0, 4.5)}]
    if rng.random() < 0.15:
        r, a = rng.uniform(0.3, 1.5), rng.uniform(0, 2 * np.pi)
        pos = np.array([r * np.cos(a), r * np.sin(a), rng.uniform(0.8, 2.0)])
        lights.append({"type": "point", "position": pos, "color": _kelvin_tint(rng.uniform(2800, 7000)),
                       "intensity": rng.uniform(2.0, 6.0) * float(pos @ pos)})
    ambient = tint * rng.uniform(0.3, 0.6)
    return lights, ambient


def sample_camera_effects(rng: np.random.Generator, light_color: np.ndarray) -> dict[str, Any]:
    """Webcam- and phone-like image degradations (real PROPS photos are soft, compressed, sometimes blurred by
    motion): exposure, white balance with a colour cast, saturation, contrast, gamma, vignetting, illumination
    falloff, soft focus or defocus, motion blur, downscale-then-upscale, sensor noise and JPEG quality."""
    # The camera's auto white balance undoes most of the light's colour cast, and adds its own error.
    white_balance = rng.normal(1.0, 0.07, 3) / light_color ** rng.uniform(0.5, 0.9)
    return {"exposure": rng.uniform(80, 140), "white_balance": white_balance / white_balance.mean(),
            "saturation": rng.uniform(0.7, 1.25), "contrast": rng.uniform(0.8, 1.2),
            "gamma": rng.uniform(0.85, 1.15), "vignette": rng.uniform(0.0, 0.35),
            "falloff": rng.uniform(0.05, 0.3), "falloff_seed": int(rng.integers(2 ** 31)),
            "shadow_blur": rng.uniform(1.5, 5.0), "shadow_opacity": rng.uniform(0.6, 0.95),
            "blur": rng.uniform(0.3, 1.6) if rng.random() < 0.8 else 0.0,
            "defocus": rng.uniform(1.0, 3.5) if rng.random() < 0.2 else 0.0,
            "motion": rng.uniform(3.0, 12.0) if rng.random() < 0.2 else 0.0,
            "motion_angle": rng.uniform(0, 180),
            "downscale": rng.uniform(0.35, 0.8) if rng.random() < 0.4 else 1.0,
            "noise": rng.uniform(1.0, 6.0), "noise_seed": int(rng.integers(2 ** 31)),
            "jpeg_quality": int(rng.integers(30, 96))}


def sample_scene(rng: np.random.Generator, assets: Mapping[str, ObjectAsset], width: int = 640,
                 height: int = 480, pool_size: int = POOL_SIZES["train"],
                 distractor_assets: Mapping[str, ObjectAsset] | None = None) -> SceneSpec:
    """Draw one scene: camera, objects, distractors, table, lights, room and camera effects (pure function of
    ``rng``). ``distractor_assets`` (name -> asset) are the non-PROPS shapes to choose from; none when empty."""
    radius = rng.uniform(*TABLE_RADIUS)
    camera_pose, intrinsics = sample_camera(rng, radius, width, height)
    names = list(assets)
    counts = [c for c in OBJECT_COUNT_WEIGHTS if c <= len(names)] or [len(names)]
    weights = np.array([OBJECT_COUNT_WEIGHTS.get(c, 1.0) for c in counts])
    count = int(counts[rng.choice(len(counts), p=weights / weights.sum())])
    chosen = [names[i] for i in rng.permutation(len(names))[:count]]
    objects, occupied = place_objects(rng, assets, chosen, radius, camera_pose, intrinsics, width, height)
    distractors: list[PlacedObject] = []
    if distractor_assets:
        pool = list(distractor_assets)
        n = int(rng.choice(len(DISTRACTOR_COUNT_WEIGHTS), p=DISTRACTOR_COUNT_WEIGHTS))
        picked = [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
        distractors, _ = place_objects(rng, distractor_assets, picked, radius, camera_pose, intrinsics, width,
                                       height, occupied, place_v=(-0.05, 1.0))
    lights, ambient = sample_lights(rng)
    half_size = rng.uniform(1.8, 3.5, 2)   # the room holds the table and the camera (within 1.6 m of its centre)
    room = {"floor": int(rng.integers(pool_size)), "wall": int(rng.integers(pool_size)),
            "half_size": half_size, "offset": rng.uniform(-1, 1, 2) * (half_size - 1.6),
            "table_height": rng.uniform(*TABLE_HEIGHT), "wall_shift": rng.uniform(0, 1),
            "tint": rng.uniform(0.95, 1.05, 3), "brightness": rng.uniform(0.5, 1.0), "blur": rng.uniform(0.8, 2.5)}
    post = sample_camera_effects(rng, lights[0]["color"])
    return SceneSpec(objects=objects, table_radius=radius, table_texture=int(rng.integers(pool_size)),
                     table_tint=rng.uniform(0.85, 1.1) * rng.uniform(0.97, 1.03, 3),
                     table_roughness=rng.uniform(0.35, 0.8),
                     table_yaw_deg=rng.uniform(0, 360), camera_pose=camera_pose, intrinsics=intrinsics,
                     lights=lights, ambient=ambient, room=room, post=post, width=width, height=height,
                     distractors=distractors)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``split``: train and val draw from disjoint streams."""
    return np.random.default_rng([seed, {"train": 101, "val": 202}[split], index])
