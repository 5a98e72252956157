"""Object assets for rendering: the YCB meshes of the PROPS classes (loaded once per process) and procedural
distractor objects (household shapes with printed-packaging textures that are not PROPS classes)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from diffdet.config import PROPS_CLASSES
from diffdet.render.textures import TEXTURE_SIZE, distractor_texture

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


# Primitive shapes, and household shapes like the real non-PROPS objects that fooled the model on real photos
# (a red bowl, a brick, a bleach bottle, a drill, a clamp, a banana); DISTRACTOR_WEIGHTS favours the latter.
DISTRACTOR_SHAPES = ("box", "cylinder", "sphere", "cone", "capsule", "flat", "bowl", "bottle", "brick", "banana",
                     "tool")
DISTRACTOR_WEIGHTS = (0.05, 0.05, 0.04, 0.03, 0.04, 0.04, 0.15, 0.15, 0.13, 0.12, 0.2)


def _lathe(profile: list[tuple[float, float]], sections: int = 40) -> "trimesh.Trimesh":
    """Solid of revolution about z of a closed (radius, height) outline that starts and ends on the axis."""
    import trimesh

    return trimesh.creation.revolve(np.asarray(profile, dtype=np.float64), sections=sections)


def _bowl(rng: np.random.Generator) -> "trimesh.Trimesh":
    """An open bowl: a curved wall 3-8 mm thick from a foot ring to the rim, hollow inside (lathe profile)."""
    rim, depth = rng.uniform(0.05, 0.11), rng.uniform(0.04, 0.09)
    foot, wall = rim * rng.uniform(0.4, 0.6), rng.uniform(0.003, 0.008)
    t = np.linspace(0, 1, 8)[1:]
    outer = [(foot + (rim - foot) * np.sin(a * np.pi / 2), depth * a) for a in t]
    inner = [(r - wall, z) for r, z in outer[::-1]][:-1]
    profile = [(0.0, 0.0), (foot, 0.0)] + outer + inner + [(0.0, wall)]
    return _lathe(profile)


def _bottle(rng: np.random.Generator) -> "trimesh.Trimesh":
    """A bottle: body (sometimes bulging), shoulder, neck and cap (lathe profile), with a handle-like bulge on the
    shoulder's side in half of them (a bleach or detergent bottle)."""
    import trimesh

    radius, height = rng.uniform(0.025, 0.06), rng.uniform(0.12, 0.3)
    neck, shoulder = radius * rng.uniform(0.25, 0.5), height * rng.uniform(0.55, 0.8)
    bulge = rng.uniform(1.0, 1.15)
    profile = [(0.0, 0.0), (radius, 0.0), (radius * bulge, shoulder * 0.4), (radius, shoulder),
               (neck, height * rng.uniform(0.82, 0.9)), (neck, height * 0.95), (neck * 1.15, height * 0.95),
               (neck * 1.15, height), (0.0, height)]
    body = _lathe(profile)
    if rng.random() < 0.5:
        grip = trimesh.creation.torus(major_radius=height * 0.12, minor_radius=rng.uniform(0.006, 0.012))
        grip.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        grip.apply_translation([radius * 0.9, 0.0, shoulder * 0.85])
        body = trimesh.util.concatenate([body, grip])
    return body


def _banana(rng: np.random.Generator) -> "trimesh.Trimesh":
    """An elongated curved shape lying flat (banana, cucumber, hose): a spindle (lathe profile tapered to both
    ends, 24 rings along its length) bent along an arc in the table plane."""
    import trimesh

    length, radius = rng.uniform(0.12, 0.25), rng.uniform(0.012, 0.025)
    u = np.linspace(-1, 1, 25)
    profile = [(0.0, -length / 2)] + [(radius * (1 - t ** 2) ** rng.uniform(0.4, 0.7), t * length / 2)
                                      for t in u[1:-1]] + [(0.0, length / 2)]
    spindle = _lathe(profile, sections=20)
    v = np.asarray(spindle.vertices)
    bend = rng.uniform(0.4, 0.9) / (length / 2)                       # curvature, 1/m: ends turn 23-52 deg
    angle = v[:, 2] * bend
    out = np.stack([(1 / bend - v[:, 0]) * np.sin(angle), 1 / bend - (1 / bend - v[:, 0]) * np.cos(angle),
                    v[:, 1]], 1)
    return trimesh.Trimesh(out, spindle.faces, process=False)


def _tool(rng: np.random.Generator) -> "trimesh.Trimesh":
    """A tool-like composition lying on the table: a body (box or cylinder) with a handle across it at one end (L,
    drill- or hammer-like) or in its middle (T), and in a third of them a second arm (C, clamp-like)."""
    import trimesh

    length, thick = rng.uniform(0.1, 0.22), rng.uniform(0.02, 0.05)
    handle_len, handle_r = rng.uniform(0.06, 0.14), rng.uniform(0.01, 0.022)
    if rng.random() < 0.5:
        body = trimesh.creation.box(extents=[length, thick, thick * rng.uniform(0.8, 1.5)])
    else:
        body = trimesh.creation.cylinder(radius=thick / 2, height=length, sections=24)
        body.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    at = length / 2 - handle_r if rng.random() < 0.6 else 0.0          # L (end) or T (middle)
    parts = [body]
    for x in ([at, -at] if (at and rng.random() < 0.35) else [at]):   # a second arm: C / clamp
        if rng.random() < 0.5:
            arm = trimesh.creation.cylinder(radius=handle_r, height=handle_len, sections=20)
            arm.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        else:
            arm = trimesh.creation.box(extents=[2 * handle_r, handle_len, 2 * handle_r])
        arm.apply_translation([x, handle_len / 2 + thick / 2 - handle_r, 0.0])
        parts.append(arm)
    return trimesh.util.concatenate(parts)


def distractor_mesh(rng: np.random.Generator, kind: str) -> "trimesh.Trimesh":
    """The mesh (metres, any placement) of one distractor of ``kind`` (one of ``DISTRACTOR_SHAPES``)."""
    import trimesh

    if kind == "box":
        return trimesh.creation.box(extents=rng.uniform(0.03, 0.22, 3))
    if kind == "cylinder":
        return trimesh.creation.cylinder(radius=rng.uniform(0.015, 0.07), height=rng.uniform(0.03, 0.25), sections=32)
    if kind == "sphere":
        return trimesh.creation.icosphere(subdivisions=2, radius=rng.uniform(0.025, 0.07))
    if kind == "cone":
        return trimesh.creation.cone(radius=rng.uniform(0.02, 0.06), height=rng.uniform(0.04, 0.15), sections=32)
    if kind == "capsule":
        return trimesh.creation.capsule(height=rng.uniform(0.03, 0.16), radius=rng.uniform(0.015, 0.05))
    if kind == "flat":
        return trimesh.creation.box(extents=[*rng.uniform(0.08, 0.3, 2), rng.uniform(0.003, 0.03)])
    if kind == "bowl":
        return _bowl(rng)
    if kind == "bottle":
        return _bottle(rng)
    if kind == "brick":   # a brick or wooden block: about 2:1 in plan, often red or brown
        return trimesh.creation.box(extents=np.array([0.2, 0.095, 0.06]) * rng.uniform(0.4, 1.1)
                                    * rng.uniform(0.85, 1.15, 3))
    if kind == "banana":
        return _banana(rng)
    if kind == "tool":
        return _tool(rng)
    raise ValueError(f"unknown distractor kind {kind!r}; expected one of {DISTRACTOR_SHAPES}")


def distractor_asset(rng: np.random.Generator, index: int) -> ObjectAsset:
    """A household-sized object that is no PROPS object: a primitive (box, cylinder, capsule, ball, cone, flat item)
    or a household shape (bowl, bottle with neck and handle, brick, banana-like curve, L/T/C tool), 3-30 cm, with a
    plain saturated colour, a pattern or a printed-packaging texture (``distractor_texture``). Pure function of
    ``rng``. The kind is the last part of the asset's name (``distractor_<index>_<kind>``).

    UVs are a cylindrical projection about the vertical axis (distractors only need to look busy, not correct).
    """
    weights = np.asarray(DISTRACTOR_WEIGHTS)
    kind = DISTRACTOR_SHAPES[int(rng.choice(len(DISTRACTOR_SHAPES), p=weights / weights.sum()))]
    mesh = distractor_mesh(rng, kind)
    if kind in ("box", "flat", "cylinder", "cone", "brick", "tool"):
        mesh.unmerge_vertices()  # flat faces get their own normals instead of smoothed corners
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    lo, hi = vertices.min(0), vertices.max(0)
    offset = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])  # xy centre at 0, bottom at z = 0
    vertices = vertices - offset
    height = max(float(hi[2] - lo[2]), 1e-6)
    uv = np.stack([np.arctan2(vertices[:, 1], vertices[:, 0]) / (2 * np.pi) + 0.5, vertices[:, 2] / height], 1)
    return ObjectAsset(name=f"distractor_{index}_{kind}", vertices=vertices,
                       normals=np.asarray(mesh.vertex_normals), uv=uv, faces=np.asarray(mesh.faces),
                       texture=distractor_texture(rng), hull=np.asarray(mesh.convex_hull.vertices) - offset)
