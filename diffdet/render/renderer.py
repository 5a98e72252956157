"""Rendering and masks: one persistent pyrender scene (objects, distractors, table) re-posed per image, a ray-cast
room behind the table, soft table shadows, and the segmentation passes that give each object's visible and
amodal (whole-object) box.

Boxes: the scene's segmentation pass gives each object's visible pixels (the VISIBLE box); the projection of its
convex hull gives its whole extent, hidden and out-of-frame parts included (the AMODAL box, clipped to the frame)
and its full area; ``visibility = visible pixels / full area``. Two GL passes per image (segmentation, colour).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from diffdet.render.assets import ObjectAsset, distractor_asset, load_asset
from diffdet.render.effects import camera_effects
from diffdet.render.scene import DISTRACTOR_POOL_SIZE, TABLE_THICKNESS, SceneSpec, _rotation, look_at, project
from diffdet.render.textures import FLOOR_EXTENT, TEXTURE_SIZE, floor_texture, table_texture, wall_texture

EGL_HELP = ("headless OpenGL (EGL) is unavailable: install the Mesa EGL packages "
            "(apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libgles2) or set PYOPENGL_PLATFORM=osmesa "
            "with libosmesa6 installed")
WALL_HEIGHT = 2.8
MIN_BOX_SIDE_PX = 4.0                         # a box thinner than this is not a detectable object
MIN_VISIBLE_PX = 30                           # nor one with fewer visible pixels
BOX_MODES = ("amodal", "visible")


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
    for obj in spec.objects + spec.distractors:
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




def amodal_extent(asset: ObjectAsset, pose: np.ndarray, spec: SceneSpec) -> tuple[list[float], float]:
    """The whole object's projection, hidden parts included: (box [x1, y1, x2, y2] clipped to the frame, area in
    pixels of its projected convex hull, parts outside the frame included).

    The box is exact (a silhouette's extremes are projected vertices, and the convex hull holds the extreme
    vertices); the area equals the silhouette's for convex objects and bounds it from above otherwise (the mug's
    handle gap), so ``visibility = visible pixels / area`` is exact or slightly low.
    """
    uv = project(asset.hull @ pose[:3, :3].T + pose[:3, 3], spec.camera_pose, spec.intrinsics)
    box = [float(np.clip(uv[:, 0].min(), 0, spec.width)), float(np.clip(uv[:, 1].min(), 0, spec.height)),
           float(np.clip(uv[:, 0].max(), 0, spec.width)), float(np.clip(uv[:, 1].max(), 0, spec.height))]
    area = float(cv2.contourArea(cv2.convexHull(uv.astype(np.float32))))
    return box, area


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
        self.distractor_pools: dict[str, dict[str, ObjectAsset]] = {}
        self.distractor_nodes: dict[str, Any] = {}
        self.table_nodes: dict[tuple[str, int], Any] = {}
        self.floors: dict[tuple[str, int], np.ndarray] = {}
        self.walls: dict[tuple[str, int], np.ndarray] = {}
        self.camera = self.scene.add(pr.IntrinsicsCamera(500, 500, width / 2, height / 2, znear=0.05, zfar=20))
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
                                                                               "wall": 3, "distractor": 4}[kind],
                                      index])

    def distractors(self, pool: str = "train") -> dict[str, ObjectAsset]:
        """The pool's distractor shapes (name -> asset), built and uploaded on first use."""
        if pool not in self.distractor_pools:
            pr = self.pyrender
            assets = {}
            for i in range(DISTRACTOR_POOL_SIZE):
                a = distractor_asset(self._pool_rng(pool, "distractor", i), i)
                name = f"{pool}/{a.name}"
                assets[name] = a
                material = pr.MetallicRoughnessMaterial(
                    baseColorTexture=pr.Texture(source=a.texture, source_channels="RGB"),
                    metallicFactor=0.0, roughnessFactor=float(self._pool_rng(pool, "distractor", i).uniform(0.3, 0.9)))
                prim = pr.Primitive(positions=a.vertices, normals=a.normals, texcoord_0=a.uv, indices=a.faces,
                                    material=material)
                self.distractor_nodes[name] = self.scene.add(pr.Mesh([prim], is_visible=False), name=name)
            self.distractor_pools[pool] = assets
        return self.distractor_pools[pool]

    def _table_node(self, pool: str, index: int) -> Any:
        key = (pool, index)
        if key not in self.table_nodes:
            pr = self.pyrender
            tex = table_texture(self._pool_rng(pool, "table", index))
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
        hidden = list(self.object_nodes.values()) + list(self.table_nodes.values()) + list(self.distractor_nodes.values())
        for node in hidden:
            node.mesh.is_visible = False
        if spec.distractors:
            self.distractors(pool)
        for o in spec.objects + spec.distractors:
            node = self.object_nodes[o.name] if o.name in self.object_nodes else self.distractor_nodes[o.name]
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
        self.scene.set_pose(self.camera, spec.camera_pose)
        return table

    def _seg(self, nodes: Sequence[Any]) -> np.ndarray:
        """Label image (H, W) uint8: 0 background, k + 1 for nodes[k]; depth-tested among ``nodes`` only."""
        seg, _ = self.renderer.render(self.scene, self.pyrender.RenderFlags.SEG,
                                      {n: (k + 1, 0, 0) for k, n in enumerate(nodes)})
        return seg[..., 0]

    def render(self, spec: SceneSpec, pool: str = "train", min_visibility: float = 0.1, box: str = "amodal"
               ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Render one scene. Returns (image (H, W, 3) uint8 RGB, objects [{"name", "xyxy", "visibility",
        "visible_xyxy", "amodal_xyxy"}]), ``xyxy`` being the ``box`` convention: "amodal" (the whole object's
        projection, hidden parts included, clipped to the frame: PROPS's convention) or "visible" (visible pixels
        only). Objects with ``visibility < min_visibility`` or fewer than MIN_VISIBLE_PX visible pixels are dropped;
        distractors are never annotated but do hide objects.
        """
        if (spec.width, spec.height) != (self.width, self.height):
            raise ValueError(f"spec size {spec.width}x{spec.height} != renderer size {self.width}x{self.height}")
        if box not in BOX_MODES:
            raise ValueError(f"box must be one of {BOX_MODES}, got {box!r}")
        self._setup(spec, pool)
        nodes = [self.object_nodes[o.name] for o in spec.objects]
        labels = self._seg(nodes + [self.distractor_nodes[o.name] for o in spec.distractors])
        rgba, _ = self.renderer.render(self.scene, self.pyrender.RenderFlags.RGBA)
        alpha = rgba[..., 3:].astype(np.float32) / 255.0
        image = rgba[..., :3].astype(np.float32)
        table = (labels == 0)[..., None]
        assets = {**self.assets, **self.distractor_pools.get(pool, {})}
        image = np.where(table, image * table_shadows(spec, assets)[..., None], image)
        image += (1.0 - alpha) * render_room(spec, *self._room_textures(pool, spec))
        image = camera_effects(image, alpha[..., 0], spec.post)

        annotations = []
        for k, obj in enumerate(spec.objects):
            ys, xs = np.nonzero(labels == k + 1)
            if len(xs) < MIN_VISIBLE_PX:
                continue
            visible = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
            whole, full_area = amodal_extent(self.assets[obj.name], obj.pose, spec)
            chosen = whole if box == "amodal" else visible
            visibility = min(len(xs) / max(full_area, 1.0), 1.0)
            if min(chosen[2] - chosen[0], chosen[3] - chosen[1]) < MIN_BOX_SIDE_PX or visibility < min_visibility:
                continue
            annotations.append({"name": obj.name, "xyxy": chosen, "visibility": round(visibility, 4),
                                "visible_xyxy": visible, "amodal_xyxy": whole})
        return image, annotations
