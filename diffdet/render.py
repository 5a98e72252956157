"""Render PROPS look-alike scenes from the YCB meshes: ``python -m diffdet render --ycb DIR --out DIR --num N``.

PROPS photographs the ten YCB objects on a round wooden table, obliquely from above, under indoor light, with
heavy occlusion. Each synthetic scene imitates that: 6-10 objects in stable poses, clustered on a procedural wooden
table, a camera 0.75-1.2 m away at 35-65 degrees elevation, a key light with a colour temperature (soft shadows on
the table), ambient fill and sometimes a point light, a ray-cast room (floor and walls with lab furniture) behind the
table, then camera effects (exposure, white balance, colour, falloff, vignetting, blur, sensor noise, JPEG quality).

Sampling is pure: ``sample_scene(rng, ...)`` turns an ``np.random.Generator`` into a ``SceneSpec``, and the image
of scene ``i`` of a split depends only on ``(seed, split, i)``, so ``--seed`` reproduces images byte for byte.

Boxes are the VISIBLE extent of each object: the scene's segmentation pass gives per-object visible pixels, an
unoccluded pass per object gives its full pixel count (a wide-angle pass adds what falls outside the frame), and
``visibility = visible / full``. Objects below ``min_visibility`` or with tiny boxes are dropped.

Output (the PROPS Detection format, read by the project's loader):
``OUT/train.json`` and ``OUT/val.json``, each a list of
``[image_path_relative_to_OUT, [{"name": class_name, "xyxy": [x1, y1, x2, y2], "visibility": v}, ...]]``,
boxes in pixels with ``0 <= x1 < x2 <= W``, ``0 <= y1 < y2 <= H``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from diffdet.config import PROPS_CLASSES

EGL_HELP = ("headless OpenGL (EGL) is unavailable: install the Mesa EGL packages "
            "(apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libgles2) or set PYOPENGL_PLATFORM=osmesa "
            "with libosmesa6 installed")

# scene
MIN_OBJECTS, MAX_OBJECTS = 6, 10              # PROPS shows most of the ten objects in every image
OBJECT_COUNT_WEIGHTS = (0.08, 0.12, 0.2, 0.25, 0.35)  # for 6..10 objects: favour full tables, like PROPS
TABLE_RADIUS = (0.45, 0.75)                   # metres; fills most of the frame, its edge shows in some views
TABLE_THICKNESS = 0.03
TABLE_HEIGHT = (0.70, 0.78)                   # table top above the floor, for the ray-cast room
CLUSTER_SIGMA = (0.03, 0.07)                  # spread of object positions; small -> heavy occlusion
FOOTPRINT_CELL = 0.0025                       # metres per cell of the no-interpenetration occupancy grid
FOOTPRINT_MARGIN = 0.002                      # metres kept between footprints
# camera (PROPS: a consumer RGB camera looking down at the table)
DISTANCE = (0.75, 1.2)                        # metres from the look-at point; with FOCAL_PX gives PROPS's
                                              # sizes: cracker box ~80-160 px tall, marker ~15-60 px
ELEVATION_DEG = (35.0, 65.0)
FOCAL_PX = (450.0, 540.0)                     # at 640 px wide: 61-71 degrees horizontal field of view
# annotations
MIN_BOX_SIDE_PX = 4.0                         # a box thinner than this is not a detectable object
MIN_VISIBLE_PX = 30                           # nor one with fewer visible pixels
# assets
TEXTURE_SIZE = 1024                           # YCB textures are 4096^2; 1024^2 looks the same at 640x480
POOL_SIZES = {"train": 24, "val": 8}          # procedural table/floor/wall textures per pool
WALL_HEIGHT = 2.8
SEG_WIDE_SCALE = 2                            # the wide pass sees SEG_WIDE_SCALE x the frame in each direction

# Stable resting poses per class: (weight, rotation applied to the upright mesh, spin axis or None).
# A spin axis is the object's own symmetry axis (cans, marker): a random spin about it shows other label parts.
_RX90, _RXm90 = ("x", 90.0), ("x", -90.0)
_RY90, _RYm90 = ("y", 90.0), ("y", -90.0)
_FLIP = ("x", 180.0)
_UP = ("x", 0.0)
_BOX_POSES = ((0.7, _UP, None), (0.08, _RX90, None), (0.08, _RXm90, None), (0.04, _RY90, None),
              (0.04, _RYm90, None), (0.06, _FLIP, None))
_CAN_POSES = ((0.8, _UP, "z"), (0.08, _FLIP, "z"), (0.12, _RX90, "z"))
STABLE_POSES: dict[str, tuple[tuple[float, tuple[str, float], str | None], ...]] = {
    "master_chef_can": _CAN_POSES,
    "tomato_soup_can": _CAN_POSES,
    "tuna_fish_can": ((0.85, _UP, "z"), (0.15, _FLIP, "z")),
    "cracker_box": _BOX_POSES,
    "sugar_box": _BOX_POSES,
    "gelatin_box": ((0.7, _UP, None), (0.15, _FLIP, None), (0.075, _RX90, None), (0.075, _RY90, None)),
    "potted_meat_can": _BOX_POSES,
    "mustard_bottle": ((0.7, _UP, None), (0.15, _RX90, None), (0.15, _RXm90, None)),
    "mug": ((0.85, _UP, None), (0.15, _FLIP, None)),
    "large_marker": ((1.0, _UP, "y"),),       # the YCB marker mesh already lies along y
}
_DEFAULT_POSES = ((0.8, _UP, None), (0.2, _FLIP, None))


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


# ---------------------------------------------------------------------------------------------------------------
# Assets: meshes (cached once per process) and procedural textures
# ---------------------------------------------------------------------------------------------------------------

def find_ycb_meshes(ycb_dir: str | Path, class_names: Sequence[str] = PROPS_CLASSES) -> dict[str, Path]:
    """Map class name -> ``textured.obj`` in a YCB folder laid out as ``NNN_<class_name>/textured.obj``.

    Raises ``ValueError`` naming the folder or the missing classes.
    """
    root = Path(ycb_dir)
    if not root.is_dir():
        raise ValueError(f"--ycb folder not found: {root} (download the YCB 'google_16k' textured meshes)")
    found: dict[str, Path] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        name = sub.name.split("_", 1)[1] if sub.name[:3].isdigit() and "_" in sub.name else sub.name
        for candidate in (sub / "textured.obj", sub / "google_16k" / "textured.obj"):
            if name in class_names and candidate.is_file():
                found[name] = candidate
                break
    missing = [c for c in class_names if c not in found]
    if missing:
        raise ValueError(f"--ycb folder {root} lacks textured.obj for classes {missing} "
                         f"(expected e.g. {root}/003_cracker_box/textured.obj)")
    return {c: found[c] for c in class_names}


@dataclass
class ObjectAsset:
    """A YCB mesh re-centred (xy centre at 0, bottom at z = 0) with its downscaled texture."""
    name: str
    vertices: np.ndarray      # (V, 3) metres
    normals: np.ndarray       # (V, 3)
    uv: np.ndarray            # (V, 2)
    faces: np.ndarray         # (F, 3)
    texture: np.ndarray       # (T, T, 3) uint8 RGB
    hull: np.ndarray          # (Hv, 3) convex-hull vertices, for footprints and resting heights


_ASSET_CACHE: dict[tuple[str, str, int], ObjectAsset] = {}


def load_asset(name: str, mesh_path: str | Path, texture_size: int = TEXTURE_SIZE) -> ObjectAsset:
    """Load a textured OBJ once per process (later calls return the cached asset)."""
    import trimesh

    key = (name, str(Path(mesh_path).resolve()), texture_size)
    if key in _ASSET_CACHE:
        return _ASSET_CACHE[key]
    mesh = trimesh.load(str(mesh_path), process=False, force="mesh")
    image = getattr(getattr(mesh.visual, "material", None), "image", None)
    uv = getattr(mesh.visual, "uv", None)
    if image is None or uv is None:
        raise ValueError(f"{mesh_path}: expected a textured mesh (UVs and a texture image), got none")
    texture = np.asarray(image.convert("RGB"))
    if max(texture.shape[:2]) > texture_size:
        texture = cv2.resize(texture, (texture_size, texture_size), interpolation=cv2.INTER_AREA)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    lo, hi = vertices.min(0), vertices.max(0)
    vertices = vertices - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    asset = ObjectAsset(name=name, vertices=vertices, normals=np.asarray(mesh.vertex_normals),
                        uv=np.asarray(uv, dtype=np.float64), faces=np.asarray(mesh.faces), texture=texture,
                        hull=np.asarray(trimesh.Trimesh(vertices, mesh.faces, process=False).convex_hull.vertices))
    _ASSET_CACHE[key] = asset
    return asset


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Band-limited noise in about [-1, 1]: a cells x cells random grid, bicubically upsampled."""
    grid = rng.normal(size=(cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(grid, (shape[1] * (cells + 3) // cells, shape[0] * (cells + 3) // cells),
                     interpolation=cv2.INTER_CUBIC)
    oy, ox = big.shape[0] // (cells + 3), big.shape[1] // (cells + 3)
    return big[oy:oy + shape[0], ox:ox + shape[1]] / 1.5


_WOODS = np.array([  # light, dark RGB of common table finishes: oak, walnut, cherry, maple, teak, pine, grey-wash
    [[196, 152, 102], [140, 96, 56]], [[120, 80, 50], [66, 40, 24]], [[170, 96, 60], [110, 52, 30]],
    [[222, 190, 142], [180, 138, 88]], [[160, 110, 62], [104, 66, 34]], [[214, 172, 116], [170, 118, 64]],
    [[172, 160, 146], [120, 108, 96]],
], dtype=np.float32)


def wood_texture(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Procedural wood: multi-scale grain streaks along a gently warped direction, faint ring lines, optional knots
    and planks, in one of a few common finishes.

    The texture spans the table's diameter (0.9-1.5 m). Returns (size, size, 3) uint8 RGB.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, np.pi)
    v = -xx * np.sin(theta) + yy * np.cos(theta)      # across the grain
    v = v + rng.uniform(0.01, 0.04) * _smooth_noise(rng, (size, size), 2) \
        + rng.uniform(0.002, 0.006) * _smooth_noise(rng, (size, size), 8)
    for _ in range(rng.integers(0, 3)):               # knots bend the rings around a point
        kx, ky = rng.uniform(0.1, 0.9, 2)
        v = v + rng.uniform(0.002, 0.008) * np.exp(-((xx - kx) ** 2 + (yy - ky) ** 2) / rng.uniform(1e-4, 6e-4))
    seam = np.zeros_like(xx, dtype=bool)
    if rng.random() < 0.25:                           # planks across the grain: each shifts its rings
        n = int(rng.integers(3, 7))
        across = (-xx * np.sin(theta) + yy * np.cos(theta) + 2.0) * n   # in [0, 3n]
        plank = np.floor(across).astype(np.int32)
        v = v + rng.uniform(0, 1, size=3 * n + 2).astype(np.float32)[plank]
        seam = np.abs(across - np.round(across)) < n * 1.5 / size
    # Grain: multi-scale 1D noise across the grain (streaks of every width), plus faint sharp ring lines.
    grid = np.arange(8192)
    grain = np.zeros_like(v)
    for freq, amp in ((25, 0.5), (80, 0.3), (250, 0.2), (900, 0.12)):
        profile = rng.normal(size=8192).astype(np.float32)
        grain += amp * np.interp((v * freq * rng.uniform(0.7, 1.4)) % 8192, grid, profile).astype(np.float32)
    rings = (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(15, 45) * v + rng.uniform(0, 2 * np.pi))) ** 6
    mix = 0.55 + rng.uniform(0.05, 0.12) * grain - rng.uniform(0.0, 0.12) * rings \
        + 0.08 * _smooth_noise(rng, (size, size), 5) + 0.08 * _smooth_noise(rng, (size, size), 2)
    light, dark = _WOODS[rng.integers(len(_WOODS))] * rng.uniform(0.9, 1.1)
    img = dark + (light - dark) * np.clip(mix, 0, 1)[..., None]
    img[seam] *= 0.75
    return np.clip(img, 0, 255).astype(np.uint8)


_FLOORS = np.array([[128, 128, 126], [190, 178, 155], [120, 96, 72], [108, 118, 132], [112, 128, 112],
                    [72, 72, 76], [205, 205, 198], [150, 60, 55]], dtype=np.float32)  # lab/office floor colours
_PAINTS = np.array([[228, 228, 222], [216, 210, 194], [190, 193, 196], [186, 200, 214], [192, 206, 186],
                    [212, 196, 170], [150, 155, 160]], dtype=np.float32)


def floor_texture(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Procedural floor covering FLOOR_EXTENT metres: tiles, linoleum speckle, carpet or concrete. RGB uint8."""
    base = _FLOORS[rng.integers(len(_FLOORS))] * rng.uniform(0.85, 1.1) * rng.uniform(0.96, 1.04, 3)
    kind = rng.integers(4)
    img = np.empty((size, size, 3), np.float32)
    img[:] = base
    img *= (1 + rng.uniform(0.03, 0.1) * _smooth_noise(rng, (size, size), 8))[..., None]
    speckle = rng.normal(size=(size, size)).astype(np.float32)
    if kind == 0:                                                   # square tiles with grout lines
        n = int(rng.integers(12, 28))
        tile = (np.arange(size) * n // size)
        img += rng.normal(0, 5, size=(n, n, 1)).astype(np.float32)[tile[:, None], tile[None, :]]
        grout = ((np.arange(size) * n) % size) < max(1, size // (n * 25))
        img[grout[:, None] | grout[None, :]] *= 0.75
    elif kind == 1:                                                 # linoleum: fine speckle
        img += (8 * speckle)[..., None]
    elif kind == 2:                                                 # carpet: blurred speckle
        img += (14 * cv2.GaussianBlur(speckle, (0, 0), 1.2))[..., None]
    else:                                                           # concrete: low-frequency blotches
        img += (12 * _smooth_noise(rng, (size, size), 24))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


FLOOR_EXTENT = 8.0  # metres covered by a floor texture (it wraps beyond)


def wall_texture(rng: np.random.Generator, width: int = 1536, height: int = 320) -> np.ndarray:
    """A strip covering the room's four walls (u = perimeter, v = height, top row = ceiling): paint, baseboard,
    and lab furniture as blurred rectangles (doors, cabinets, shelves with clutter, windows, posters). RGB uint8."""
    paint = _PAINTS[rng.integers(len(_PAINTS))] * rng.uniform(0.85, 1.05) * rng.uniform(0.97, 1.03, 3)
    img = np.empty((height, width, 3), np.float32)
    img[:] = paint
    img += (6 * _smooth_noise(rng, (height, width), 10))[..., None]
    floor_row = height - 1
    for _ in range(rng.integers(6, 16)):
        w = int(rng.uniform(0.03, 0.12) * width)
        h = int(rng.uniform(0.25, 0.8) * height)
        x0 = int(rng.integers(0, width - w))
        kind = rng.integers(5)
        color = _PAINTS[rng.integers(len(_PAINTS))] * rng.uniform(0.3, 1.0)   # cabinets: greys, beige, dark
        if rng.random() < 0.25:                                     # now and then a coloured one
            color = 0.5 * color + 0.5 * rng.uniform(30, 230, size=3)
        if kind == 0:                                               # window / light panel: bright
            color = np.full(3, rng.uniform(225, 255))
            y0 = int(rng.uniform(0.1, 0.3) * height)
        elif kind == 1:                                             # poster / whiteboard high on the wall
            color = rng.uniform(40, 240, size=3) if rng.random() < 0.5 else np.full(3, rng.uniform(200, 245))
            y0 = int(rng.uniform(0.15, 0.4) * height)
            h = int(h * 0.4)
        else:                                                       # door, cabinet, shelf standing on the floor
            y0 = floor_row - h
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), color.tolist(), -1)
        if kind >= 3:                                               # shelves: rows of small coloured items
            for row in range(y0 + 6, y0 + h - 4, max(8, h // 5)):
                cv2.line(img, (x0, row), (x0 + w, row), (color * 0.6).tolist(), 2)
                for _ in range(int(rng.integers(2, 8))):
                    ix = int(rng.integers(x0, x0 + max(w - 4, 1)))
                    cv2.rectangle(img, (ix, row - int(rng.integers(3, 8))), (ix + int(rng.integers(2, 6)), row),
                                  rng.uniform(20, 240, size=3).tolist(), -1)
    base_h = max(2, height // 40)
    img[floor_row - base_h:] = _PAINTS[rng.integers(len(_PAINTS))] * rng.uniform(0.3, 0.9)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Scene sampling (pure: everything random comes from the generator passed in)
# ---------------------------------------------------------------------------------------------------------------

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


def _kelvin_tint(kelvin: float) -> np.ndarray:
    """Mild RGB tint of a light of this colour temperature (a camera's white balance removes most of it)."""
    warm, neutral, cool = np.array([1.0, 0.82, 0.62]), np.ones(3), np.array([0.88, 0.94, 1.0])
    if kelvin < 5500:
        a = (5500 - kelvin) / 2800
        return neutral * (1 - a) + warm * a
    return neutral + (cool - neutral) * min((kelvin - 5500) / 1500, 1.0)


def _footprint(asset: ObjectAsset, rot: np.ndarray, xy: np.ndarray, grid: int, cell: float, margin: float
               ) -> np.ndarray:
    """Occupancy mask (grid x grid, centred on the table centre) of the object's convex footprint."""
    pts = (asset.hull @ rot.T)[:, :2] + xy
    pix = np.round((pts + margin * np.sign(pts - pts.mean(0))) / cell + grid / 2).astype(np.int32)
    mask = np.zeros((grid, grid), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(pix), 1)
    return mask


def _choose_rest_rotation(rng: np.random.Generator, name: str) -> np.ndarray:
    """A stable resting orientation (before the yaw about the table normal)."""
    poses = STABLE_POSES.get(name, _DEFAULT_POSES)
    weights = np.array([p[0] for p in poses])
    _, (axis, deg), spin_axis = poses[rng.choice(len(poses), p=weights / weights.sum())]
    spin = _rotation(spin_axis, rng.uniform(0, 360)) if spin_axis else np.eye(3)
    return _rotation(axis, deg) @ spin


def place_objects(rng: np.random.Generator, assets: Mapping[str, ObjectAsset], table_radius: float
                  ) -> list[PlacedObject]:
    """Place 6-10 objects (fewer if fewer classes) in stable poses, clustered, without interpenetration.

    Rejection sampling of 2D footprints on an occupancy grid; larger objects are placed first so the small ones
    fill gaps, as when someone sets a table.
    """
    names = list(assets)
    count = min(len(names), MAX_OBJECTS,
                MIN_OBJECTS + int(rng.choice(len(OBJECT_COUNT_WEIGHTS), p=OBJECT_COUNT_WEIGHTS)))
    chosen = [names[i] for i in rng.permutation(len(names))[:count]]
    chosen.sort(key=lambda n: -float(np.prod(np.ptp(assets[n].hull[:, :2], axis=0))))
    grid = int(np.ceil(2 * table_radius / FOOTPRINT_CELL))
    occupied = np.zeros((grid, grid), np.uint8)
    centre = rng.normal(0, 0.04, size=2)
    sigma = rng.uniform(*CLUSTER_SIGMA)
    placed: list[PlacedObject] = []
    for name in chosen:
        asset = assets[name]
        rest = _choose_rest_rotation(rng, name)
        for attempt in range(60):
            rot = _rotation("z", rng.uniform(0, 360)) @ rest
            xy = centre + rng.normal(0, sigma * (1 + attempt / 20), size=2)
            pts = (asset.hull @ rot.T)
            if np.max(np.linalg.norm(pts[:, :2] + xy, axis=1)) > table_radius - 0.02:
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
    return placed


def project(points: np.ndarray, camera_pose: np.ndarray, intrinsics: tuple[float, float, float, float]
            ) -> np.ndarray:
    """World points (P, 3) -> pixel coordinates (P, 2): x right, y down, pixel (i, j) covers [i, i + 1) x [j, j + 1).

    Matches pyrender's IntrinsicsCamera; points must lie in front of the camera.
    """
    fx, fy, cx, cy = intrinsics
    cam = (np.linalg.inv(camera_pose) @ np.c_[points, np.ones(len(points))].T).T[:, :3]
    depth = -cam[:, 2]
    return np.stack([fx * cam[:, 0] / depth + cx, cy - fy * cam[:, 1] / depth], axis=1)


def sample_camera(rng: np.random.Generator, objects: list[PlacedObject], width: int, height: int
                  ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A PROPS-like viewpoint aimed at the cluster; re-drawn (up to 20 times) until every object centre is in view."""
    centres = np.array([o.pose[:3, 3] for o in objects]) if objects else np.zeros((1, 3))
    scale = width / 640.0
    for _ in range(20):
        target = np.r_[centres[:, :2].mean(0) + rng.normal(0, 0.03, 2), rng.uniform(0.03, 0.08)]
        dist = rng.uniform(*DISTANCE)
        elev = np.radians(rng.uniform(*ELEVATION_DEG))
        azim = rng.uniform(0, 2 * np.pi)
        eye = target + dist * np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
        pose = look_at(eye, target, roll_deg=rng.normal(0, 2.0))
        f = rng.uniform(*FOCAL_PX) * scale
        intr = (f, f, width / 2 + rng.normal(0, 3) * scale, height / 2 + rng.normal(0, 3) * scale)
        uv = project(centres + [0, 0, 0.03], pose, intr)
        margin = 25 * scale
        if np.all((uv[:, 0] > margin) & (uv[:, 0] < width - margin) & (uv[:, 1] > margin)
                  & (uv[:, 1] < height - margin)):
            break
    return pose, intr


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


def sample_scene(rng: np.random.Generator, assets: Mapping[str, ObjectAsset], width: int = 640,
                 height: int = 480, pool_size: int = POOL_SIZES["train"]) -> SceneSpec:
    """Draw one scene: objects, table, camera, lights, room and camera effects (pure function of ``rng``)."""
    radius = rng.uniform(*TABLE_RADIUS)
    objects = place_objects(rng, assets, radius)
    camera_pose, intrinsics = sample_camera(rng, objects, width, height)
    lights, ambient = sample_lights(rng)
    half_size = rng.uniform(1.8, 3.5, 2)   # the room holds the table and the camera (within 1.6 m of its centre)
    room = {"floor": int(rng.integers(pool_size)), "wall": int(rng.integers(pool_size)),
            "half_size": half_size, "offset": rng.uniform(-1, 1, 2) * (half_size - 1.6),
            "table_height": rng.uniform(*TABLE_HEIGHT), "wall_shift": rng.uniform(0, 1),
            "tint": rng.uniform(0.95, 1.05, 3), "brightness": rng.uniform(0.5, 1.0), "blur": rng.uniform(0.8, 2.5)}
    # The camera's auto white balance undoes most of the light's colour cast, and adds its own small error.
    white_balance = rng.normal(1.0, 0.04, 3) / lights[0]["color"] ** rng.uniform(0.5, 0.9)
    post = {"exposure": rng.uniform(90, 130), "white_balance": white_balance / white_balance.mean(),
            "saturation": rng.uniform(0.8, 1.2), "contrast": rng.uniform(0.85, 1.15),
            "gamma": rng.uniform(0.9, 1.1), "vignette": rng.uniform(0.0, 0.3),
            "falloff": rng.uniform(0.05, 0.25), "falloff_seed": int(rng.integers(2 ** 31)),
            "shadow_blur": rng.uniform(1.5, 5.0), "shadow_opacity": rng.uniform(0.6, 0.95),
            "blur": rng.uniform(0.0, 0.9) if rng.random() < 0.7 else 0.0, "noise": rng.uniform(1.0, 4.0),
            "noise_seed": int(rng.integers(2 ** 31)), "jpeg_quality": int(rng.integers(70, 96))}
    return SceneSpec(objects=objects, table_radius=radius, table_texture=int(rng.integers(pool_size)),
                     table_tint=rng.uniform(0.85, 1.1) * rng.uniform(0.97, 1.03, 3),
                     table_roughness=rng.uniform(0.35, 0.8),
                     table_yaw_deg=rng.uniform(0, 360), camera_pose=camera_pose, intrinsics=intrinsics,
                     lights=lights, ambient=ambient, room=room, post=post, width=width, height=height)


# ---------------------------------------------------------------------------------------------------------------
# Image synthesis: background room, camera effects
# ---------------------------------------------------------------------------------------------------------------

def render_room(spec: SceneSpec, floor: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """Ray-cast the floor and walls of a box-shaped room behind the table. (H, W, 3) float32 RGB, 0-255.

    Rays are cast on a quarter-resolution grid and their texture coordinates upsampled: the background is
    defocused anyway, and this keeps it to a few milliseconds.
    """
    W, H, s = spec.width, spec.height, 4
    fx, fy, cx, cy = spec.intrinsics
    gx, gy = np.meshgrid((np.arange(W // s) + 0.5) * s, (np.arange(H // s) + 0.5) * s)
    rays = np.stack([(gx - cx) / fx, -(gy - cy) / fy, -np.ones_like(gx)], -1) @ spec.camera_pose[:3, :3].T
    eye = spec.camera_pose[:3, 3]
    room = spec.room
    zf = -room["table_height"]
    lo, hi = room["offset"] - room["half_size"], room["offset"] + room["half_size"]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(rays[..., 2] < 0, (zf - eye[2]) / rays[..., 2], np.inf)
        tx = np.where(rays[..., 0] > 0, (hi[0] - eye[0]) / rays[..., 0], (lo[0] - eye[0]) / rays[..., 0])
        ty = np.where(rays[..., 1] > 0, (hi[1] - eye[1]) / rays[..., 1], (lo[1] - eye[1]) / rays[..., 1])
    t_wall = np.minimum(tx, ty)
    is_floor = t_floor < t_wall
    p_wall = eye + rays * t_wall[..., None]
    # Where a ray hits a wall, give the floor the wall's foot instead: both maps then stay continuous across the
    # floor/wall line and their upsampling does not smear texture garbage along it.
    p_floor = np.where(is_floor[..., None], eye + rays * np.where(is_floor, t_floor, 0)[..., None], p_wall)
    fs = floor.shape[0] / FLOOR_EXTENT                                   # floor texture pixels per metre
    size = hi - lo
    rel = p_wall[..., :2] - lo
    per = np.where(tx < ty, np.where(rays[..., 0] > 0, size[0] + rel[..., 1], 2 * size[0] + 2 * size[1] - rel[..., 1]),
                   np.where(rays[..., 1] > 0, 2 * size[0] + size[1] - rel[..., 0], rel[..., 0]))
    angle = 2 * np.pi * (per / (2 * (size[0] + size[1])) + room["wall_shift"])  # position around the room

    def up(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)

    # Upsample only continuous quantities (the perimeter position as cos/sin, so it has no seam), then decide.
    wall_u = (np.arctan2(up(np.sin(angle)), up(np.cos(angle))) / (2 * np.pi) % 1.0) * wall.shape[1]
    height_on_wall = up(p_wall[..., 2] - zf)                          # < 0: the ray meets the floor first
    wall_v = (1.0 - np.clip(height_on_wall / WALL_HEIGHT, 0, 1)) * (wall.shape[0] - 1)
    step = np.abs(np.gradient(height_on_wall, axis=0)) + np.abs(np.gradient(height_on_wall, axis=1)) + 1e-9
    mask = np.clip(0.5 - height_on_wall / step, 0, 1)[..., None]       # anti-aliased floor/wall line
    floor_img = cv2.remap(floor, up(p_floor[..., 0] * fs) % floor.shape[1], up(p_floor[..., 1] * fs) % floor.shape[0],
                          cv2.INTER_LINEAR)
    wall_img = cv2.remap(wall, wall_u, wall_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    # Floor shading: brighter near the table (lamp above it), darker with distance; walls a bit darker than floor.
    shade = up(np.clip(1.1 - 0.12 * np.linalg.norm(p_floor[..., :2], axis=-1), 0.55, 1.1))[..., None]
    img = mask * floor_img.astype(np.float32) * shade + (1 - mask) * wall_img.astype(np.float32) * 0.85
    img = img * room["tint"] * room["brightness"]
    return cv2.GaussianBlur(img, (0, 0), room["blur"])


def table_shadows(spec: SceneSpec, assets: Mapping[str, ObjectAsset]) -> np.ndarray:
    """Soft shadows of the objects on the table top: a (H, W) float32 factor in (0, 1] for table pixels.

    Each object's convex hull is projected along the key light onto the table plane, plus a contact shadow
    around its base, then drawn in the image and blurred. This replaces pyrender's shadow maps, which cost llvmpipe
    more than the whole lit pass and give hard, aliased edges where indoor light gives soft ones.
    """
    H, W = spec.height, spec.width
    key = spec.lights[0]
    d = key["direction"] / np.linalg.norm(key["direction"])          # travel direction of the light, d_z < 0
    direct = key["intensity"] / np.pi * max(-d[2], 0.1)
    share = direct / (direct + float(np.mean(spec.ambient)))        # the key light's share of the table's light
    cast = np.zeros((H, W), np.float32)
    contact = np.zeros((H, W), np.float32)
    for obj in spec.objects:
        pts = assets[obj.name].hull @ obj.pose[:3, :3].T + obj.pose[:3, 3]
        on_table = pts - d * (pts[:, 2:3] / d[2])
        uv = project(on_table, spec.camera_pose, spec.intrinsics)
        cv2.fillConvexPoly(cast, cv2.convexHull(np.round(uv * 4).astype(np.int32)), 1.0, cv2.LINE_AA, 2)
        base = pts[pts[:, 2] < pts[:, 2].min() + 0.01]
        base = base.mean(0) + (base - base.mean(0)) * 1.12
        uv = project(base, spec.camera_pose, spec.intrinsics)
        cv2.fillConvexPoly(contact, cv2.convexHull(np.round(uv * 4).astype(np.int32)), 1.0, cv2.LINE_AA, 2)
    cast = cv2.GaussianBlur(cast, (0, 0), spec.post["shadow_blur"])
    contact = cv2.GaussianBlur(contact, (0, 0), 2.5)
    # pyrender's output is sRGB-encoded: a linear light factor f darkens the 8-bit values by about f ** (1 / 2.2).
    linear = (1 - spec.post["shadow_opacity"] * share * cast) * (1 - 0.45 * contact)
    return np.clip(linear, 0.05, 1.0) ** (1 / 2.2)


def camera_effects(image: np.ndarray, foreground: np.ndarray, post: Mapping[str, Any]) -> np.ndarray:
    """Auto-exposure on the table, white balance, saturation, contrast, gamma, illumination falloff and vignetting,
    blur, sensor noise.

    image: (H, W, 3) float32 RGB 0-255; foreground: (H, W) float32 in [0, 1]. Returns uint8 RGB.
    """
    H, W = image.shape[:2]
    to_luma = np.array([0.299, 0.587, 0.114], np.float32)
    luma = image[::4, ::4] @ to_luma
    weight = foreground[::4, ::4] if foreground[::4, ::4].sum() > 10 else np.ones_like(luma)
    gain = np.clip(post["exposure"] / max(float((luma * weight).sum() / weight.sum()), 1.0), 0.6, 2.0)
    img = image * (gain * np.asarray(post["white_balance"], np.float32))
    gray = (img @ to_luma)[..., None]
    img = gray + np.float32(post["saturation"]) * (img - gray)
    img = np.clip(128 + np.float32(post["contrast"]) * (img - 128), 0, 255)
    lut = (255 * (np.arange(256, dtype=np.float32) / 255) ** post["gamma"]).astype(np.float32)
    img = lut[img.astype(np.uint8)]
    # A lamp's falloff over the scene and lens vignetting: one smooth multiplicative map.
    yy, xx = np.mgrid[0:H // 8, 0:W // 8].astype(np.float32)
    r2 = ((xx - W / 16) / (W / 16)) ** 2 + ((yy - H / 16) / (H / 16)) ** 2
    falloff = _smooth_noise(np.random.default_rng(post["falloff_seed"]), (H // 8, W // 8), 2)
    shade = (1 - post["vignette"] * r2 / 2) * (1 + post["falloff"] * falloff)
    img *= cv2.resize(shade, (W, H), interpolation=cv2.INTER_LINEAR)[..., None]
    if post["blur"] > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), post["blur"])
    noise = np.random.default_rng(post["noise_seed"]).standard_normal(size=img.shape, dtype=np.float32)
    return np.clip(img + noise * np.float32(post["noise"]), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# The renderer: one persistent pyrender scene whose nodes are re-posed and shown/hidden per image
# ---------------------------------------------------------------------------------------------------------------

def _import_pyrender() -> Any:
    """Import pyrender on headless EGL; a missing EGL becomes a RuntimeError that names the apt packages."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if not hasattr(np, "infty"):  # pyrender 0.1.45 still reads np.infty, removed in NumPy 2
        np.infty = np.inf  # type: ignore[attr-defined]
    try:
        import pyrender
    except Exception as exc:  # PyOpenGL raises a variety of errors when libEGL is missing
        raise RuntimeError(f"{EGL_HELP} ({type(exc).__name__}: {exc})") from exc
    return pyrender


def _table_primitive_arrays(segments: int = 128) -> tuple[np.ndarray, ...]:
    """Unit-radius table: top disc (z = 0) and side band (z in [-1, 0], scaled by the thickness later)."""
    a = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([np.cos(a), np.sin(a)], 1)
    top = np.c_[np.r_[[[0, 0]], ring], np.zeros(segments + 1)]
    side = np.r_[np.c_[ring, np.zeros(segments)], np.c_[ring, -np.ones(segments)]]
    positions = np.r_[top, side]
    normals = np.r_[np.tile([0, 0, 1.0], (segments + 1, 1)), np.c_[ring, np.zeros(segments)],
                    np.c_[ring, np.zeros(segments)]]
    uv = np.r_[0.5 + 0.5 * top[:, :2], 0.5 + 0.5 * ring, 0.5 + 0.47 * ring]
    i = np.arange(segments)
    j = (i + 1) % segments
    faces = np.r_[np.c_[np.zeros(segments), 1 + i, 1 + j],
                  np.c_[segments + 1 + i, 2 * segments + 1 + i, segments + 1 + j],
                  np.c_[segments + 1 + j, 2 * segments + 1 + i, 2 * segments + 1 + j]]
    return positions, normals, uv, faces.astype(np.int64)


class SceneRenderer:
    """Renders ``SceneSpec`` s to (image, annotations) with one offscreen EGL context.

    Meshes are uploaded once; per image only poses, visibility flags, materials and lights change. Procedural
    texture pools are generated lazily from ``(seed, pool name, index)`` so they are the same in every process.
    """

    def __init__(self, meshes: Mapping[str, str | Path], width: int = 640, height: int = 480, seed: int = 0,
                 texture_size: int = TEXTURE_SIZE):
        if not meshes:
            raise ValueError("meshes: expected at least one class_name -> mesh path")
        self.pyrender = pr = _import_pyrender()
        self.width, self.height, self.seed = width, height, seed
        self.assets = {name: load_asset(name, path, texture_size) for name, path in meshes.items()}
        try:
            self.renderer = pr.OffscreenRenderer(width, height)
        except Exception as exc:
            raise RuntimeError(f"{EGL_HELP} ({type(exc).__name__}: {exc})") from exc
        self.scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[0.3, 0.3, 0.3])
        self.object_nodes = {}
        for name, a in self.assets.items():
            material = pr.MetallicRoughnessMaterial(
                baseColorTexture=pr.Texture(source=a.texture, source_channels="RGB"),
                metallicFactor=0.0, roughnessFactor=0.6)
            prim = pr.Primitive(positions=a.vertices, normals=a.normals, texcoord_0=a.uv, indices=a.faces,
                                material=material)
            self.object_nodes[name] = self.scene.add(pr.Mesh([prim], is_visible=False), name=name)
        self.table_nodes: dict[tuple[str, int], Any] = {}
        self.floors: dict[tuple[str, int], np.ndarray] = {}
        self.walls: dict[tuple[str, int], np.ndarray] = {}
        self.camera = self.scene.add(pr.IntrinsicsCamera(500, 500, width / 2, height / 2, znear=0.05, zfar=20))
        self.wide_camera = self.scene.add(pr.IntrinsicsCamera(250, 250, width / 2, height / 2, znear=0.05, zfar=20))
        self.scene.main_camera_node = self.camera
        self.light_nodes: list[Any] = []

    def close(self) -> None:
        self.renderer.delete()

    def __enter__(self) -> "SceneRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pool_rng(self, pool: str, kind: str, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, {"train": 1, "val": 2}[pool], {"table": 1, "floor": 2,
                                                                               "wall": 3}[kind], index])

    def _table_node(self, pool: str, index: int) -> Any:
        key = (pool, index)
        if key not in self.table_nodes:
            pr = self.pyrender
            tex = wood_texture(self._pool_rng(pool, "table", index))
            material = pr.MetallicRoughnessMaterial(baseColorTexture=pr.Texture(source=tex, source_channels="RGB"),
                                                    metallicFactor=0.0, roughnessFactor=0.6)
            pos, nrm, uv, faces = _table_primitive_arrays()
            prim = pr.Primitive(positions=pos, normals=nrm, texcoord_0=uv, indices=faces, material=material)
            self.table_nodes[key] = self.scene.add(pr.Mesh([prim], is_visible=False))
        return self.table_nodes[key]

    def _room_textures(self, pool: str, spec: SceneSpec) -> tuple[np.ndarray, np.ndarray]:
        fk, wk = (pool, spec.room["floor"]), (pool, spec.room["wall"])
        if fk not in self.floors:
            self.floors[fk] = floor_texture(self._pool_rng(pool, "floor", fk[1]))
        if wk not in self.walls:
            self.walls[wk] = wall_texture(self._pool_rng(pool, "wall", wk[1]))
        return self.floors[fk], self.walls[wk]

    def _setup(self, spec: SceneSpec, pool: str) -> Any:
        pr = self.pyrender
        for node in list(self.object_nodes.values()) + list(self.table_nodes.values()):
            node.mesh.is_visible = False
        for o in spec.objects:
            node = self.object_nodes[o.name]
            node.mesh.is_visible = True
            self.scene.set_pose(node, o.pose)
        table = self._table_node(pool, spec.table_texture)
        table.mesh.is_visible = True
        mat = table.mesh.primitives[0].material
        mat.baseColorFactor = np.r_[spec.table_tint, 1.0]
        mat.roughnessFactor = spec.table_roughness
        pose = np.eye(4)
        pose[:3, :3] = _rotation("z", spec.table_yaw_deg) @ np.diag([spec.table_radius] * 2 + [TABLE_THICKNESS])
        self.scene.set_pose(table, pose)
        for node in self.light_nodes:
            self.scene.remove_node(node)
        self.light_nodes = []
        for light in spec.lights:
            if light["type"] == "directional":
                d = light["direction"]
                pose = look_at(-d, np.zeros(3)) if abs(d[2]) < 0.999 else np.eye(4)
                node = self.scene.add(pr.DirectionalLight(color=light["color"], intensity=light["intensity"]),
                                      pose=pose)
            else:
                pose = np.eye(4)
                pose[:3, 3] = light["position"]
                node = self.scene.add(pr.PointLight(color=light["color"], intensity=light["intensity"]), pose=pose)
            self.light_nodes.append(node)
        self.scene.ambient_light = spec.ambient
        fx, fy, cx, cy = spec.intrinsics
        self.camera.camera.fx, self.camera.camera.fy, self.camera.camera.cx, self.camera.camera.cy = fx, fy, cx, cy
        s = SEG_WIDE_SCALE
        wide = self.wide_camera.camera
        wide.fx, wide.fy, wide.cx, wide.cy = fx / s, fy / s, cx, cy
        self.scene.set_pose(self.camera, spec.camera_pose)
        self.scene.set_pose(self.wide_camera, spec.camera_pose)
        return table

    def _seg(self, nodes: Sequence[Any], wide: bool = False) -> np.ndarray:
        """Label image (H, W) uint8: 0 background, k + 1 for nodes[k]; depth-tested among ``nodes`` only."""
        pr = self.pyrender
        self.scene.main_camera_node = self.wide_camera if wide else self.camera
        try:
            seg, _ = self.renderer.render(self.scene, pr.RenderFlags.SEG,
                                          {n: (k + 1, 0, 0) for k, n in enumerate(nodes)})
        finally:
            self.scene.main_camera_node = self.camera
        return seg[..., 0]

    def _non_overlapping_groups(self, spec: SceneSpec) -> list[list[int]]:
        """Greedy colouring of the objects so that no two in a group can overlap on screen.

        Objects whose projected convex hulls are disjoint cannot occlude each other, so one segmentation pass
        per group gives each member's unoccluded mask: typically 3-5 passes instead of one per object.
        """
        s = 4  # hulls are rasterised at 1/4 resolution, dilated by a cell to stay conservative
        canvas = (self.height // s + 2, self.width // s + 2)
        groups: list[tuple[list[int], np.ndarray]] = []
        for k, obj in enumerate(spec.objects):
            asset = self.assets[obj.name]
            uv = project(asset.hull @ obj.pose[:3, :3].T + obj.pose[:3, 3], spec.camera_pose, spec.intrinsics)
            pix = np.clip(np.round(uv / s + 1), -1e4, 1e4).astype(np.int32)
            mask = np.zeros(canvas, np.uint8)
            cv2.fillConvexPoly(mask, cv2.convexHull(pix), 1)
            mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
            for members, union in groups:
                if not np.any(union & mask):
                    members.append(k)
                    union |= mask
                    break
            else:
                groups.append(([k], mask))
        return [members for members, _ in groups]

    def _full_pixel_counts(self, spec: SceneSpec, nodes: Sequence[Any]) -> np.ndarray:
        """Pixels each object would cover unoccluded, (N,), counting parts that fall outside the frame."""
        counts = np.zeros(len(nodes), np.int64)
        H, W, s = self.height, self.width, SEG_WIDE_SCALE
        for group in self._non_overlapping_groups(spec):
            labels = self._seg([nodes[k] for k in group])
            for j, k in enumerate(group):
                alone = labels == j + 1
                counts[k] = np.count_nonzero(alone)
                if alone[0].any() or alone[-1].any() or alone[:, 0].any() or alone[:, -1].any():
                    # Truncated: the wide camera (focal / s, same centre) sees the frame as its central 1/s part.
                    wide = self._seg([nodes[k]], wide=True)
                    cx, cy = self.camera.camera.cx, self.camera.camera.cy
                    x0, x1 = int(round(cx - cx / s)), int(round(cx + (W - cx) / s))
                    y0, y1 = int(round(cy - cy / s)), int(round(cy + (H - cy) / s))
                    outside = np.count_nonzero(wide) - np.count_nonzero(wide[y0:y1, x0:x1])
                    counts[k] += s * s * outside
        return counts

    def render(self, spec: SceneSpec, pool: str = "train", min_visibility: float = 0.2
               ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Render one scene. Returns (image (H, W, 3) uint8 RGB, objects [{"name", "xyxy", "visibility"}])."""
        if (spec.width, spec.height) != (self.width, self.height):
            raise ValueError(f"spec size {spec.width}x{spec.height} != renderer size {self.width}x{self.height}")
        self._setup(spec, pool)
        nodes = [self.object_nodes[o.name] for o in spec.objects]
        labels = self._seg(nodes)
        rgba, _ = self.renderer.render(self.scene, self.pyrender.RenderFlags.RGBA)
        alpha = rgba[..., 3:].astype(np.float32) / 255.0
        image = rgba[..., :3].astype(np.float32)
        table = (labels == 0)[..., None]
        image = np.where(table, image * table_shadows(spec, self.assets)[..., None], image)
        image += (1.0 - alpha) * render_room(spec, *self._room_textures(pool, spec))
        image = camera_effects(image, alpha[..., 0], spec.post)

        full = self._full_pixel_counts(spec, nodes)
        annotations = []
        for k, obj in enumerate(spec.objects):
            ys, xs = np.nonzero(labels == k + 1)
            if len(xs) < MIN_VISIBLE_PX:
                continue
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
            visibility = min(len(xs) / max(int(full[k]), 1), 1.0)
            if min(box[2] - box[0], box[3] - box[1]) < MIN_BOX_SIDE_PX or visibility < min_visibility:
                continue
            annotations.append({"name": obj.name, "xyxy": box, "visibility": round(visibility, 4)})
        return image, annotations


# ---------------------------------------------------------------------------------------------------------------
# Dataset writer and CLI
# ---------------------------------------------------------------------------------------------------------------

def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``split``: train and val draw from disjoint streams."""
    return np.random.default_rng([seed, {"train": 101, "val": 202}[split], index])


def render_dataset(meshes: Mapping[str, str | Path], out_dir: str | Path, num_train: int, num_val: int,
                   seed: int = 0, split_scenes: bool = False, min_visibility: float = 0.2, width: int = 640,
                   height: int = 480, texture_size: int = TEXTURE_SIZE, progress: bool = True) -> dict[str, Any]:
    """Render ``num_train`` + ``num_val`` scenes into ``out_dir`` in the PROPS Detection format.

    meshes: class name -> textured mesh path (e.g. from ``find_ycb_meshes``). Validation scenes come from their own
    random stream; with ``split_scenes`` they also use their own pools of table, floor and wall textures.
    Returns {"train": n, "val": n, "seconds": s, "images_per_s": r, "boxes": b}.
    """
    from tqdm import tqdm

    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ValueError(f"expected a positive number of images, got {num_train} train + {num_val} val")
    if not 0.0 <= min_visibility <= 1.0:
        raise ValueError(f"min_visibility must be in [0, 1], got {min_visibility}")
    if width < 32 or height < 32:
        raise ValueError(f"image size too small: {width}x{height}")
    out = Path(out_dir)
    start, n_boxes = time.perf_counter(), 0
    with SceneRenderer(meshes, width, height, seed=seed, texture_size=texture_size) as renderer:
        for split, count in (("train", num_train), ("val", num_val)):
            pool = "val" if split == "val" and split_scenes else "train"
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
            records = []
            for i in tqdm(range(count), desc=f"render {split}", unit="img", disable=not progress):
                spec = sample_scene(scene_rng(seed, split, i), renderer.assets, width, height, POOL_SIZES[pool])
                image, objects = renderer.render(spec, pool=pool, min_visibility=min_visibility)
                rel = f"images/{split}/{i:06d}.jpg"
                cv2.imwrite(str(out / rel), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, spec.post["jpeg_quality"]])
                records.append([rel, objects])
                n_boxes += len(objects)
            (out / f"{split}.json").write_text(json.dumps(records))
    seconds = time.perf_counter() - start
    summary = {"train": num_train, "val": num_val, "seconds": round(seconds, 1), "boxes": n_boxes,
               "images_per_s": round((num_train + num_val) / seconds, 2)}
    (out / "render_config.json").write_text(json.dumps(
        {"seed": seed, "split_scenes": split_scenes, "min_visibility": min_visibility, "width": width,
         "height": height, "classes": list(meshes), **summary}, indent=1))
    return summary


def cli(argv: list[str]) -> int:
    """``python -m diffdet render --ycb DIR --out DIR --num N --seed S [--val-fraction F | --num-val M]
    [--split-scenes] [--min-visibility V] [--width W --height H]``."""
    parser = argparse.ArgumentParser(prog="python -m diffdet render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ycb", required=True, help="folder of YCB models: NNN_<class>/textured.obj (google_16k)")
    parser.add_argument("--out", required=True, help="output folder: train.json, val.json, images/")
    parser.add_argument("--num", type=int, required=True, help="total number of images (train + val)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.15, help="share of --num rendered as val")
    parser.add_argument("--num-val", type=int, default=None, help="number of val images (overrides the fraction)")
    parser.add_argument("--split-scenes", action="store_true",
                        help="val also uses its own table/floor/wall textures (a harder, disjoint-look split)")
    parser.add_argument("--min-visibility", type=float, default=0.2, help="drop objects less visible than this")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--texture-size", type=int, default=TEXTURE_SIZE, help="YCB textures are downscaled to it")
    args = parser.parse_args(argv)
    if args.num <= 0:
        parser.error(f"--num must be a positive number of images, got {args.num}")
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    num_val = round(args.num * args.val_fraction) if args.num_val is None else args.num_val
    if not 0 <= num_val <= args.num:
        parser.error(f"--num-val must be in [0, --num={args.num}], got {num_val}")
    try:
        meshes = find_ycb_meshes(args.ycb)
        summary = render_dataset(meshes, args.out, args.num - num_val, num_val, seed=args.seed,
                                 split_scenes=args.split_scenes, min_visibility=args.min_visibility,
                                 width=args.width, height=args.height, texture_size=args.texture_size)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {summary['train']} train + {summary['val']} val images ({summary['boxes']} boxes) to {args.out} "
          f"in {summary['seconds']} s ({summary['images_per_s']} images/s)")
    return 0
