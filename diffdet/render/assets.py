"""Object assets for rendering: the YCB meshes of the PROPS classes (loaded once per process) and procedural
distractor objects (household shapes with printed-packaging textures that are not PROPS classes)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from diffdet.config import PROPS_CLASSES
from diffdet.render.textures import TEXTURE_SIZE, packaging_texture

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


DISTRACTOR_SHAPES = ("box", "cylinder", "sphere", "cone", "capsule", "flat")


def distractor_asset(rng: np.random.Generator, index: int) -> ObjectAsset:
    """A household-sized shape that is no PROPS object: a box, bottle-like cylinder or capsule, ball, cone or a
    flat item (a book, a sheet), 3-25 cm, with a printed-packaging texture. Pure function of ``rng``.

    UVs are a cylindrical projection about the vertical axis (distractors only need to look busy, not correct).
    """
    import trimesh

    kind = DISTRACTOR_SHAPES[int(rng.integers(len(DISTRACTOR_SHAPES)))]
    if kind == "box":
        mesh = trimesh.creation.box(extents=rng.uniform(0.03, 0.22, 3))
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=rng.uniform(0.015, 0.07), height=rng.uniform(0.03, 0.25), sections=32)
    elif kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=rng.uniform(0.025, 0.07))
    elif kind == "cone":
        mesh = trimesh.creation.cone(radius=rng.uniform(0.02, 0.06), height=rng.uniform(0.04, 0.15), sections=32)
    elif kind == "capsule":
        mesh = trimesh.creation.capsule(height=rng.uniform(0.03, 0.16), radius=rng.uniform(0.015, 0.05))
    else:
        mesh = trimesh.creation.box(extents=[*rng.uniform(0.08, 0.3, 2), rng.uniform(0.003, 0.03)])
    if kind in ("box", "flat", "cylinder", "cone"):
        mesh.unmerge_vertices()  # flat faces get their own normals instead of smoothed corners
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    lo, hi = vertices.min(0), vertices.max(0)
    offset = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])  # xy centre at 0, bottom at z = 0
    vertices = vertices - offset
    height = max(float(hi[2] - lo[2]), 1e-6)
    uv = np.stack([np.arctan2(vertices[:, 1], vertices[:, 0]) / (2 * np.pi) + 0.5, vertices[:, 2] / height], 1)
    return ObjectAsset(name=f"distractor_{index}_{kind}", vertices=vertices,
                       normals=np.asarray(mesh.vertex_normals), uv=uv, faces=np.asarray(mesh.faces),
                       texture=packaging_texture(rng), hull=np.asarray(mesh.convex_hull.vertices) - offset)
