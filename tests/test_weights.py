import os
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffdet.config import get_preset
from diffdet.model import DiffusionDet, build_model
from diffdet.weights import convert_reference, load_checkpoint, read_metadata, save_checkpoint


def test_safetensors_round_trip_keeps_config_and_weights(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path)
    meta = read_metadata(path)
    assert "config" in meta and "master_chef_can" in meta["class_names"]
    loaded = load_checkpoint(path)
    assert loaded.cfg == tiny_model.cfg
    for (k, a), b in zip(tiny_model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_fp16_checkpoint_is_half_size_and_loads_as_float32(tmp_path, tiny_model):
    save_checkpoint(tiny_model, tmp_path / "f32.safetensors")
    save_checkpoint(tiny_model, tmp_path / "f16.safetensors", dtype=torch.float16)
    ratio = os.path.getsize(tmp_path / "f16.safetensors") / os.path.getsize(tmp_path / "f32.safetensors")
    assert 0.45 < ratio < 0.55
    loaded = load_checkpoint(tmp_path / "f16.safetensors")
    assert loaded.head.time_mlp[1].weight.dtype == torch.float32


def test_wrong_shapes_and_missing_keys_are_refused(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path)
    meta = read_metadata(path)
    state = load_file(str(path))
    bad = dict(state)
    bad["head.head_series.0.class_logits.weight"] = torch.zeros(3, 128)
    del bad["head.time_mlp.1.bias"]
    save_file(bad, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"missing key.*time_mlp\.1\.bias.*mis-shaped.*class_logits") as err:
        load_checkpoint(tmp_path / "bad.safetensors")
    assert "(3, 128)" in str(err.value)


def test_non_checkpoints_are_refused(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "junk.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a diffdet checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")


def _to_reference_key(key: str) -> str:
    """This project's key -> the detectron2 layout of REFERENCE.md section 6 (written independently of the converter)."""
    rules = [
        (r"^backbone\.body\.conv1\.weight$", "backbone.bottom_up.stem.conv1.weight"),
        (r"^backbone\.body\.bn1\.(\w+)$", r"backbone.bottom_up.stem.conv1.norm.\1"),
        (r"^backbone\.body\.layer(\d)\.(\d+)\.conv(\d)\.weight$", lambda m: f"backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"),
        (r"^backbone\.body\.layer(\d)\.(\d+)\.bn(\d)\.(\w+)$", lambda m: f"backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
        (r"^backbone\.body\.layer(\d)\.(\d+)\.downsample\.0\.weight$", lambda m: f"backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}.shortcut.weight"),
        (r"^backbone\.body\.layer(\d)\.(\d+)\.downsample\.1\.(\w+)$", lambda m: f"backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"),
        (r"^backbone\.fpn\.inner_blocks\.(\d)\.0\.(\w+)$", lambda m: f"backbone.fpn_lateral{int(m[1]) + 2}.{m[2]}"),
        (r"^backbone\.fpn\.layer_blocks\.(\d)\.0\.(\w+)$", lambda m: f"backbone.fpn_output{int(m[1]) + 2}.{m[2]}"),
        (r"^heatmap_head\.layer\.(\d)\.(\w+)$", r"heatHead.layer.\1.\2"),
        (r"^(head\..*)$", r"\1"),
    ]
    for pattern, repl in rules:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    raise AssertionError(f"no reference name for {key}")


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory):
    """A synthetic detectron2-layout R-50 checkpoint with 10 classes, 1 stage and the heatmap head."""
    cfg = get_preset("props_r50", num_stages=1)
    torch.manual_seed(0)
    model = build_model(cfg)
    state = {_to_reference_key(k): v.clone() for k, v in model.state_dict().items()}
    state["alphas_cumprod"] = torch.ones(1000)  # stored by the reference, recomputed here
    state["betas"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("ref") / "ref.pth"
    torch.save({"model": state, "iteration": 1234}, path)
    return path, model


def test_converter_round_trip(tmp_path, reference_file):
    path, original = reference_file
    converted = convert_reference(path)
    assert converted.cfg.backbone == "resnet50" and converted.cfg.num_stages == 1 and converted.cfg.use_heatmap
    assert converted.cfg.num_classes == 10
    for (k, a), b in zip(original.state_dict().items(), converted.state_dict().values()):
        assert torch.equal(a, b), k
    from diffdet.__main__ import main

    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 0
    assert load_checkpoint(tmp_path / "out.safetensors").cfg.num_stages == 1


def test_converter_refuses_unknown_and_mis_shaped_keys(tmp_path, reference_file):
    path, _ = reference_file
    state = torch.load(path, weights_only=True)["model"]
    unknown = dict(state, **{"backbone.bottom_up.res6.0.conv1.weight": torch.zeros(1)})
    torch.save({"model": unknown}, tmp_path / "unknown.pth")
    with pytest.raises(ValueError, match="no counterpart.*res6"):
        convert_reference(tmp_path / "unknown.pth")
    mis = dict(state, **{"head.head_series.0.bboxes_delta.weight": torch.zeros(5, 256)})
    torch.save({"model": mis}, tmp_path / "mis.pth")
    with pytest.raises(ValueError, match="mis-shaped.*bboxes_delta"):
        convert_reference(tmp_path / "mis.pth")


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_with_a_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {"w": torch.zeros(1)}, "evil": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="refusing"):
        convert_reference(tmp_path / "evil.pth")
    assert not marker.exists()


def test_model_without_heatmap_for_coco(tmp_path):
    cfg = get_preset("coco_r50", num_stages=1, backbone="resnet18", fpn_channels=256)
    model = DiffusionDet(cfg)
    assert model.heatmap_head is None and model.cfg.num_classes == 80


def test_converter_round_trip_keeps_num_proposals_and_test_size(tmp_path, reference_file, capsys):
    from diffdet.__main__ import main

    path, _ = reference_file
    out = tmp_path / "p300.safetensors"
    assert main(["convert", str(path), str(out), "--num-proposals", "300", "--min-size-test", "512",
                 "--max-size-test", "704"]) == 0
    printed = capsys.readouterr().out
    assert "300 proposals" in printed and "num_proposals: 300" in printed and "min_size_test: 512" in printed
    cfg = load_checkpoint(out).cfg
    assert (cfg.num_proposals, cfg.min_size_test, cfg.max_size_test) == (300, 512, 704)
    assert cfg.class_names == get_preset("props_r50").class_names  # a 10-class file takes the PROPS preset's names
    # Without the flag the count is the preset's, and another preset gives its own values.
    assert convert_reference(path).cfg.num_proposals == get_preset("props_r50").num_proposals
    with pytest.raises(ValueError, match="10 classes but preset 'coco_r50' names 80"):
        convert_reference(path, preset="coco_r50")
    coco_sized = convert_reference(path, preset="coco_r50", class_names=[f"c{i}" for i in range(10)])
    assert coco_sized.cfg.num_proposals == 500 and coco_sized.cfg.min_size_test == 800


def test_converter_needs_class_names_it_cannot_know(tmp_path, reference_file, capsys):
    """A 7-class checkpoint matches no preset: its names must be given, never made up from the count."""
    from diffdet.__main__ import main

    path, _ = reference_file
    state = torch.load(path, weights_only=True)["model"]
    for key in ("head.head_series.0.class_logits.weight", "head.head_series.0.class_logits.bias",
                "heatHead.layer.2.weight", "heatHead.layer.2.bias"):
        state[key] = state[key][:7].clone()
    seven = tmp_path / "seven.pth"
    torch.save({"model": state}, seven)
    with pytest.raises(ValueError, match="7 classes.*class names"):
        convert_reference(seven)
    with pytest.raises(ValueError, match="3 class names given for a checkpoint with 7 classes"):
        convert_reference(seven, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="distinct"):
        convert_reference(seven, class_names=["a"] * 7)
    with pytest.raises(SystemExit):
        main(["convert", str(seven), str(tmp_path / "x.safetensors")])
    assert "--class-names" in capsys.readouterr().err
    names = ["apple", "pear", "fig", "kiwi", "lime", "plum", "date"]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    for given in (names, [str(tmp_path / "names.txt")]):
        out = tmp_path / "seven.safetensors"
        assert main(["convert", str(seven), str(out), "--class-names", *given]) == 0
        assert load_checkpoint(out).cfg.class_names == tuple(names)


def test_non_finite_checkpoints_are_never_written_nor_loaded(tmp_path, tiny_cfg):
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    with torch.no_grad():
        model.head.head_series[0].class_logits.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"refusing to write .*1 tensor\(s\) hold NaN or infinite values.*class_logits"):
        save_checkpoint(model, tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists() and not list(tmp_path.glob("*.tmp"))
    # A value beyond float16's range would become inf in an fp16 file: refused as well.
    with torch.no_grad():
        model.head.head_series[0].class_logits.weight[0, 0] = 1e6
    with pytest.raises(ValueError, match="NaN or infinite"):
        save_checkpoint(model, tmp_path / "big.safetensors", dtype=torch.float16)
    # A file written by other means (here: safetensors directly) with inf inside is refused on load, by name.
    save_checkpoint(model, tmp_path / "ok.safetensors")
    state = load_file(str(tmp_path / "ok.safetensors"))
    state["head.head_series.0.class_logits.weight"][1, 1] = float("inf")
    save_file(state, str(tmp_path / "inf.safetensors"), metadata=read_metadata(tmp_path / "ok.safetensors"))
    with pytest.raises(ValueError, match=r"inf.safetensors is unusable: 1 tensor\(s\) hold NaN or infinite values"):
        load_checkpoint(tmp_path / "inf.safetensors")
