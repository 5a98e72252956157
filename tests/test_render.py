"""Tests of the scene renderer on tiny generated textured boxes laid out like the YCB folder (no shared data)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from diffdet import render
from diffdet.config import PROPS_CLASSES

W, H = 160, 120  # small images keep the tests fast; the pipeline is resolution-independent


def write_textured_box(folder: Path, size_xyz: tuple[float, float, float], seed: int) -> Path:
    """A box (metres, bottom at z = 0) as textured.obj + textured.mtl + texture_map.png, YCB style."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    texture = np.repeat(np.repeat(rng.integers(40, 255, size=(4, 4, 3)), 16, 0), 16, 1).astype(np.uint8)
    cv2.imwrite(str(folder / "texture_map.png"), texture)
    (folder / "textured.mtl").write_text("newmtl material_0\nKd 1 1 1\nmap_Kd texture_map.png\n")
    sx, sy, sz = size_xyz
    corners = np.array([[x, y, z] for x in (-sx / 2, sx / 2) for y in (-sy / 2, sy / 2) for z in (0, sz)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]  # outward CCW
    lines = ["mtllib textured.mtl"] + [f"v {x} {y} {z}" for x, y, z in corners]
    lines += ["vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1", "usemtl material_0"]
    for q in quads:
        lines.append(f"f {q[0] + 1}/1 {q[1] + 1}/2 {q[2] + 1}/3")
        lines.append(f"f {q[0] + 1}/1 {q[2] + 1}/3 {q[3] + 1}/4")
    (folder / "textured.obj").write_text("\n".join(lines) + "\n")
    return folder / "textured.obj"


@pytest.fixture(scope="module")
def ycb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All ten PROPS classes as boxes of plausible sizes, in NNN_<class>/textured.obj folders."""
    root = tmp_path_factory.mktemp("ycb")
    rng = np.random.default_rng(0)
    for i, name in enumerate(PROPS_CLASSES):
        size = tuple(rng.uniform(0.04, 0.09, 2)) + (rng.uniform(0.04, 0.18),)
        write_textured_box(root / f"{i:03d}_{name}", size, seed=i)
    return root


@pytest.fixture(scope="module")
def two_boxes(ycb_dir: Path) -> dict[str, Path]:
    meshes = render.find_ycb_meshes(ycb_dir)
    return {"cracker_box": meshes["cracker_box"], "sugar_box": meshes["sugar_box"]}


def check_props_json(path: Path, out: Path) -> list:
    records = json.loads(path.read_text())
    assert isinstance(records, list)
    for rel, objects in records:
        assert isinstance(rel, str) and (out / rel).is_file()
        assert len(objects) <= 10
        for obj in objects:
            assert obj["name"] in PROPS_CLASSES
            x1, y1, x2, y2 = obj["xyxy"]
            assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H, obj
            assert 0.1 <= obj["visibility"] <= 1.0
            assert obj["xyxy"] == obj["amodal_xyxy"]  # amodal boxes are the default
    return records


def test_cli_writes_props_format(ycb_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "renders"
    rc = render.cli(["--ycb", str(ycb_dir), "--out", str(out), "--num", "5", "--num-val", "2", "--seed", "3",
                     "--width", str(W), "--height", str(H), "--split-scenes"])
    assert rc == 0
    train = check_props_json(out / "train.json", out)
    val = check_props_json(out / "val.json", out)
    assert len(train) == 3 and len(val) == 2
    assert sum(len(objs) for _, objs in train + val) > 0
    assert cv2.imread(str(out / train[0][0])).shape == (H, W, 3)
    # validation is disjoint from training: other files, other scenes
    assert not {rel for rel, _ in train} & {rel for rel, _ in val}
    train_bytes = {(out / rel).read_bytes() for rel, _ in train}
    assert all((out / rel).read_bytes() not in train_bytes for rel, _ in val)


def test_same_seed_same_bytes(two_boxes: dict[str, Path], tmp_path: Path) -> None:
    kwargs = dict(num_train=2, num_val=1, seed=11, width=W, height=H, progress=False)
    render.render_dataset(two_boxes, tmp_path / "a", **kwargs)
    render.render_dataset(two_boxes, tmp_path / "b", **kwargs)
    for name in ("images/train/000000.jpg", "images/train/000001.jpg", "images/val/000000.jpg", "train.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    render.render_dataset(two_boxes, tmp_path / "c", **{**kwargs, "seed": 12})
    first = "images/train/000000.jpg"
    assert (tmp_path / "a" / first).read_bytes() != (tmp_path / "c" / first).read_bytes()


def test_scene_sampling_is_pure_and_splits_differ(two_boxes: dict[str, Path]) -> None:
    assets = {name: render.load_asset(name, path) for name, path in two_boxes.items()}
    a = render.sample_scene(render.scene_rng(0, "train", 4), assets, W, H)
    b = render.sample_scene(render.scene_rng(0, "train", 4), assets, W, H)
    v = render.sample_scene(render.scene_rng(0, "val", 4), assets, W, H)
    assert np.array_equal(a.camera_pose, b.camera_pose)
    assert all(np.array_equal(p.pose, q.pose) for p, q in zip(a.objects, b.objects))
    assert not np.array_equal(a.camera_pose, v.camera_pose)
    # objects rest on the table: their lowest point at z ~ 0
    for obj in a.objects:
        pts = assets[obj.name].hull @ obj.pose[:3, :3].T + obj.pose[:3, 3]
        assert abs(pts[:, 2].min()) < 1e-3


def occlusion_spec(objects: list[render.PlacedObject]) -> render.SceneSpec:
    """Camera on the -y side looking at the origin; a tall box at y = -0.1 hides part of a box at y = +0.1."""
    rng = np.random.default_rng(0)
    base = render.sample_scene(rng, {}, W, H)  # lights, room and camera effects; no objects
    eye = np.array([0.0, -0.8, 0.15])
    return render.SceneSpec(
        objects=objects, table_radius=0.5, table_texture=0, table_tint=np.ones(3), table_roughness=0.6,
        table_yaw_deg=0.0, camera_pose=render.look_at(eye, np.array([0.0, 0.0, 0.06])),
        intrinsics=(150.0, 150.0, W / 2, H / 2), lights=base.lights, ambient=base.ambient,
        room=base.room, post=base.post, width=W, height=H)


def test_visible_box_of_occluded_object_is_smaller(tmp_path: Path) -> None:
    # a low, wide box in front hides the lower half of a narrow box behind it
    meshes = {"cracker_box": write_textured_box(tmp_path / "front", (0.2, 0.05, 0.07), seed=1),
              "sugar_box": write_textured_box(tmp_path / "behind", (0.05, 0.05, 0.14), seed=2)}

    def placed(name: str, y: float) -> render.PlacedObject:
        pose = np.eye(4)
        pose[:3, 3] = [0.0, y, 0.0]
        return render.PlacedObject(name, pose)

    behind = placed("sugar_box", 0.1)
    front = placed("cracker_box", -0.1)
    with render.SceneRenderer(meshes, W, H) as renderer:
        image, alone = renderer.render(occlusion_spec([behind]), min_visibility=0.0, box="visible")
        _, both = renderer.render(occlusion_spec([behind, front]), min_visibility=0.0, box="visible")
        _, strict = renderer.render(occlusion_spec([behind, front]), min_visibility=0.9, box="visible")
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    (box_alone,) = [o for o in alone if o["name"] == "sugar_box"]
    (box_both,) = [o for o in both if o["name"] == "sugar_box"]
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    assert box_alone["visibility"] > 0.9  # GPU pixel count vs projected hull area: edge pixels at 160x120
    assert box_both["visibility"] < 0.8
    assert area(box_both["xyxy"]) < 0.9 * area(box_alone["xyxy"])
    assert box_both["xyxy"][3] < box_alone["xyxy"][3]  # its bottom edge moved up
    assert [o["name"] for o in strict] == ["cracker_box"]  # the occluded box falls below min_visibility


def test_split_scenes_use_their_own_texture_pool(two_boxes: dict[str, Path]) -> None:
    with render.SceneRenderer(two_boxes, W, H, seed=0) as renderer:
        spec = render.sample_scene(render.scene_rng(0, "val", 0), renderer.assets, W, H, render.POOL_SIZES["val"])
        renderer.render(spec, pool="val")
        assert set(renderer.table_nodes) == {("val", spec.table_texture)}
    train_tex = render.wood_texture(np.random.default_rng([0, 1, 1, 0]), 64)
    val_tex = render.wood_texture(np.random.default_rng([0, 2, 1, 0]), 64)
    assert not np.array_equal(train_tex, val_tex)


def test_bad_arguments_give_clear_errors(ycb_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        render.cli(["--ycb", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--num", "2"])
    assert "--ycb folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        render.cli(["--ycb", str(ycb_dir), "--out", str(tmp_path / "o"), "--num", "0"])
    assert "argument --num: must be >= 1, got 0" in capsys.readouterr().err
    partial = tmp_path / "partial"
    write_textured_box(partial / "003_cracker_box", (0.06, 0.16, 0.21), seed=0)
    with pytest.raises(ValueError, match="lacks textured.obj for classes"):
        render.find_ycb_meshes(partial)


def test_missing_egl_names_the_apt_packages(two_boxes: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    pyrender = render._import_pyrender()

    def no_egl(*args: object, **kwargs: object) -> None:
        raise ImportError("Unable to load EGL library")

    monkeypatch.setattr(pyrender, "OffscreenRenderer", no_egl)
    with pytest.raises(RuntimeError, match="libegl1 libegl-mesa0 libgl1-mesa-dri"):
        render.SceneRenderer(two_boxes, W, H)


def test_amodal_box_of_half_hidden_object_covers_its_whole_projection(tmp_path: Path) -> None:
    meshes = {"cracker_box": write_textured_box(tmp_path / "front", (0.2, 0.05, 0.07), seed=1),
              "sugar_box": write_textured_box(tmp_path / "behind", (0.05, 0.05, 0.14), seed=2)}
    poses = {}
    for name, y in (("sugar_box", 0.1), ("cracker_box", -0.1)):
        poses[name] = np.eye(4)
        poses[name][:3, 3] = [0.0, y, 0.0]
    spec = occlusion_spec([render.PlacedObject(n, p) for n, p in poses.items()])
    with render.SceneRenderer(meshes, W, H) as renderer:
        _, objects = renderer.render(spec, min_visibility=0.0)  # amodal by default
        vertices = renderer.assets["sugar_box"].vertices
    (hidden,) = [o for o in objects if o["name"] == "sugar_box"]
    assert hidden["visibility"] < 0.8  # half of it is behind the front box
    projected = render.project(vertices + poses["sugar_box"][:3, 3], spec.camera_pose, spec.intrinsics)
    expected = [projected[:, 0].min(), projected[:, 1].min(), projected[:, 0].max(), projected[:, 1].max()]
    assert np.allclose(hidden["xyxy"], expected, atol=1.5), (hidden["xyxy"], expected)
    visible = hidden["visible_xyxy"]
    assert visible[3] < hidden["xyxy"][3] - 5  # the visible box stops where the front box starts


def test_amodal_box_of_object_cut_by_the_border_is_clipped_to_the_frame(tmp_path: Path) -> None:
    meshes = {"sugar_box": write_textured_box(tmp_path / "box", (0.05, 0.05, 0.14), seed=2)}
    pose = np.eye(4)
    pose[:3, 3] = [0.48, 0.1, 0.0]  # far to the right: part of it is outside the frame
    spec = occlusion_spec([render.PlacedObject("sugar_box", pose)])
    with render.SceneRenderer(meshes, W, H) as renderer:
        _, objects = renderer.render(spec, min_visibility=0.0)
    (obj,) = objects
    assert obj["xyxy"][2] == W and obj["xyxy"][0] < W - 4
    assert 0.05 < obj["visibility"] < 0.95  # the part outside the frame counts as not visible


def test_scenes_spread_objects_over_the_frame_with_distractors(two_boxes: dict[str, Path], ycb_dir: Path) -> None:
    meshes = render.find_ycb_meshes(ycb_dir)
    assets = {name: render.load_asset(name, path) for name, path in meshes.items()}
    rng = np.random.default_rng(0)
    distractors = {f"d{i}": render.distractor_asset(rng, i) for i in range(6)}
    centres, counts, n_distractors = [], [], 0
    for i in range(12):
        spec = render.sample_scene(render.scene_rng(0, "train", i), assets, 640, 480, distractor_assets=distractors)
        uv = render.project(np.array([o.pose[:3, 3] for o in spec.objects]), spec.camera_pose, spec.intrinsics)
        centres.append(uv)
        counts.append(len(spec.objects))
        n_distractors += len(spec.distractors)
        assert all(o.name in distractors for o in spec.distractors)
    uv = np.concatenate(centres)
    # spread over the frame, not bunched at the centre (real PROPS: x 50-545, y 75-380 for the 5th-95th pct)
    assert np.percentile(uv[:, 0], 5) < 120 and np.percentile(uv[:, 0], 95) > 500
    assert np.percentile(uv[:, 1], 5) < 150 and np.percentile(uv[:, 1], 95) > 330
    assert np.median(counts) >= 9 and n_distractors > 0


def test_camera_effect_kernels_and_low_resolution() -> None:
    from diffdet.render import effects

    for kernel in (effects.disk_kernel(2.5), effects.motion_kernel(9.0, 30.0)):
        assert kernel.sum() == pytest.approx(1.0, abs=1e-5) and kernel.min() >= 0
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (H, W, 3)).astype(np.float32)
    post = render.sample_scene(np.random.default_rng(1), {}, W, H).post
    plain = {**post, "blur": 0.0, "defocus": 0.0, "motion": 0.0, "downscale": 1.0, "noise": 0.0}
    sharp = render.camera_effects(image, np.ones((H, W), np.float32), plain)
    soft = render.camera_effects(image, np.ones((H, W), np.float32), {**plain, "downscale": 0.4})
    # a low-resolution camera removes fine detail: neighbouring pixels become alike
    detail = lambda im: float(np.abs(np.diff(im.astype(np.float32), axis=1)).mean())  # noqa: E731
    assert detail(soft) < 0.6 * detail(sharp)


def test_statistics_of_a_rendered_set_beside_real_props(ycb_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from diffdet.render import stats

    out = tmp_path / "renders"
    assert render.cli(["--ycb", str(ycb_dir), "--out", str(out), "--num", "3", "--num-val", "0",
                       "--width", str(W), "--height", str(H)]) == 0
    records = json.loads((out / "train.json").read_text())
    result = render.box_statistics(records, W, H)
    n_boxes = sum(len(objs) for _, objs in records)
    assert result["images"] == 3 and result["boxes"] == n_boxes > 0
    sides = [np.sqrt((b[2] - b[0]) * (b[3] - b[1])) * 640 / W for _, objs in records for b in (o["xyxy"] for o in objs)]
    assert result["sqrt_area_px"]["p50"] == pytest.approx(np.percentile(sides, 50), abs=0.1)
    assert stats.cli(["--data", str(out), "--width", str(W), "--height", str(H)]) == 0
    table = capsys.readouterr().out
    assert "| sqrt(box area) px, p10 / p50 / p90 | 64 / 103 / 170 |" in table and "tuna_fish_can" in table
    with pytest.raises(ValueError, match="no boxes"):
        render.box_statistics([["a.jpg", []]])


HOUSEHOLD = ("bowl", "bottle", "brick", "banana", "tool")


def test_household_distractors_have_their_shape() -> None:
    """Each household distractor kind is a closed mesh of household size with the feature that makes it that kind:
    a bowl is hollow and open on top, a bottle has a neck narrower than its body, a brick is about 2:1 in plan, a
    banana is long, thin and curved, a tool is an L/T/C composition (much emptier than its convex hull)."""
    import trimesh

    for kind in HOUSEHOLD:
        for seed in range(4):
            mesh = render.distractor_mesh(np.random.default_rng(seed), kind)
            assert mesh.is_watertight and mesh.volume > 0, (kind, seed)
            extents = np.sort(mesh.extents)
            assert 0.01 < extents[0] and extents[-1] < 0.32, (kind, seed, extents)
            lo, hi = mesh.bounds
            hull_share = mesh.volume / mesh.convex_hull.volume
            # outline of the horizontal cross-section at height z: radii of its points from the z axis
            radii = lambda z: np.linalg.norm(  # noqa: E731
                trimesh.intersections.mesh_plane(mesh, [0, 0, 1], [0, 0, z])[:, :, :2], axis=-1)
            if kind == "bowl":
                # hollow: the wall holds a small share of the hull; open: just below the rim the section is a
                # thin ring (inner and outer outline), while near the bottom it is a solid disc (one outline)
                assert hull_share < 0.5
                near_rim = radii(hi[2] - 0.005)
                assert near_rim.min() > 0.8 * near_rim.max()
                assert len(near_rim) > 0 and near_rim.min() < near_rim.max() - 0.002
                bottom = radii(0.001)
                assert bottom.max() - bottom.min() < 1e-3
            elif kind == "bottle":
                assert radii(lo[2] + 0.93 * (hi[2] - lo[2])).max() < 0.6 * radii(lo[2] + 0.3 * (hi[2] - lo[2])).max()
            elif kind == "brick":
                assert hull_share > 0.99 and 1.5 < mesh.extents[0] / mesh.extents[1] < 2.8
            elif kind == "banana":
                # long and thin, lying along x; curved: both tips bend 1 cm or more away from the middle's side
                assert mesh.extents[0] > 2.5 * mesh.extents[2] and mesh.extents[0] > 2.0 * mesh.extents[1]
                tips = mesh.vertices[np.argsort(mesh.vertices[:, 0])[[0, -1]]]
                assert np.all(tips[:, 1] > lo[1] + 0.01)
            else:
                assert hull_share < 0.8
    with pytest.raises(ValueError, match="unknown distractor kind"):
        render.distractor_mesh(np.random.default_rng(0), "teapot")


def test_distractor_assets_sit_on_the_table_in_props_colours() -> None:
    """Assets are centred in xy with their bottom at z = 0 and named by kind; their plain colours include the
    PROPS objects' dominant red, yellow, blue and white, so a colour alone cannot mean a PROPS class."""
    from diffdet.render import textures

    kinds, means = set(), []
    for i in range(60):
        asset = render.distractor_asset(np.random.default_rng([5, i]), i)
        kind = asset.name.rsplit("_", 1)[-1]
        kinds.add(kind)
        assert asset.name == f"distractor_{i}_{kind}" and kind in render.DISTRACTOR_SHAPES
        assert asset.vertices[:, 2].min() == pytest.approx(0.0, abs=1e-9)
        assert np.abs(asset.vertices[:, :2].max(0) + asset.vertices[:, :2].min(0)).max() < 1e-9
        assert asset.texture.shape == (256, 256, 3) and asset.texture.dtype == np.uint8
        assert len(asset.uv) == len(asset.vertices) == len(asset.normals)
    assert set(HOUSEHOLD) <= kinds
    for i in range(200):
        tex = textures.distractor_texture(np.random.default_rng([6, i]), 64)
        if tex.std(axis=(0, 1)).max() < 12:                       # a plain one
            means.append(tex.reshape(-1, 3).mean(0))
    means = np.array(means)
    for name, rgb in (("red", (200, 30, 30)), ("yellow", (230, 200, 40)), ("blue", (40, 70, 190)),
                      ("white", (235, 235, 230))):
        assert np.linalg.norm(means - rgb, axis=1).min() < 40, name


def dark_line_share(image: np.ndarray) -> float:
    """Share of pixels much darker than their 15 px neighbourhood's median (joint lines, not grain)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(np.mean(grey.astype(np.float32) < 0.75 * cv2.medianBlur(grey, 15).astype(np.float32)))


def test_plank_table_tops_have_dark_joints() -> None:
    """Planks are separated by dark joint lines; the same wood without planks has none. The joints are straight:
    the dark pixels line up along one direction (a Hough line through them)."""
    for seed in range(4):
        planks = render.wood_texture(np.random.default_rng(seed), 256, planks=True, knots=False)
        plain = render.wood_texture(np.random.default_rng(seed), 256, planks=False, knots=False)
        assert dark_line_share(planks) > 0.01 and dark_line_share(plain) < 0.002, seed
        grey = cv2.cvtColor(planks, cv2.COLOR_RGB2GRAY)
        dark = (grey.astype(np.float32) < 0.75 * cv2.medianBlur(grey, 15).astype(np.float32)).astype(np.uint8)
        lines = cv2.HoughLines(dark * 255, 1, np.pi / 180, threshold=80)
        assert lines is not None and len(lines) > 0, seed


def test_table_kinds() -> None:
    from diffdet.render import textures

    for kind in textures.TABLE_KINDS:
        tex = render.table_texture(np.random.default_rng(1), 128, kind=kind)
        assert tex.shape == (128, 128, 3) and tex.dtype == np.uint8 and tex.std() > 1.0, kind
    with pytest.raises(ValueError, match="unknown table kind"):
        render.table_texture(np.random.default_rng(1), 128, kind="glass")


def test_curved_and_tool_distractors_lie_flat(ycb_dir: Path) -> None:
    """Bananas and tools rest flat on the table the way they were built (never stood on end)."""
    meshes = render.find_ycb_meshes(ycb_dir)
    assets = {name: render.load_asset(name, path) for name, path in list(meshes.items())[:2]}
    pool = {}
    for i in range(30):
        a = render.distractor_asset(np.random.default_rng([7, i]), i)
        if a.name.endswith(("_banana", "_tool")):
            pool[a.name] = a
    assert len(pool) >= 4
    placed = 0
    for i in range(10):
        spec = render.sample_scene(render.scene_rng(3, "train", i), assets, 640, 480, distractor_assets=pool)
        for o in spec.distractors:
            height = np.ptp((pool[o.name].vertices @ o.pose[:3, :3].T)[:, 2])
            assert height <= np.ptp(pool[o.name].vertices[:, 2]) + 1e-6, o.name
            placed += 1
    assert placed > 0
