import pytest

from diffdet.config import PRESETS, PROPS_CLASSES, DiffDetConfig, get_preset


def test_presets_match_reference_numbers():
    props = get_preset("props_r50")
    assert props.backbone == "resnet50" and props.num_proposals == 200 and props.use_heatmap
    assert props.class_names == PROPS_CLASSES and props.num_classes == 10
    assert (props.min_radius, props.rho, props.heatmap_weight) == (4.0, 0.5, 1.5)
    coco = get_preset("coco_r50")
    assert coco.num_classes == 80 and coco.num_proposals == 500 and not coco.use_heatmap
    assert get_preset("tiny").num_proposals < props.num_proposals


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name):
    cfg = PRESETS[name]
    assert DiffDetConfig.from_json(cfg.to_json()) == cfg


def test_bad_values_raise_naming_the_field():
    with pytest.raises(ValueError, match="backbone"):
        get_preset("tiny", backbone="vgg")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(ValueError, match="unknown config field"):
        DiffDetConfig.from_dict({"not_a_field": 1})
    with pytest.raises(ValueError, match="hidden_dim"):
        get_preset("props_r50", hidden_dim=128)


@pytest.mark.parametrize("field, value, message", [
    ("lr", -1.0, "lr must be > 0"), ("nms_iou", float("nan"), "nms_iou must be in [0, 1]"),
    ("checkpoint_every", 0, "checkpoint_every must be >= 1"), ("min_size_train", (480, 0), "min_size_train must be"),
    ("crop_size", (600, 384), "crop_size must be (min, max)"), ("sampling_steps", 2000, "sampling_steps"),
    ("class_names", ("mug", "mug"), "class_names must be unique"),
])
def test_every_numeric_field_is_range_checked(field, value, message):
    with pytest.raises(ValueError) as info:
        get_preset("tiny", **{field: value})
    assert message in str(info.value)


def test_config_flags_give_one_line_argparse_errors(capsys):
    from diffdet.config import ArgumentParser, add_config_arguments, config_from_arguments

    parser = ArgumentParser(prog="t")
    add_config_arguments(parser)
    cfg = config_from_arguments(get_preset("tiny"), parser.parse_args(["--lr", "0.5", "--min-size-train", "320", "352"]))
    assert cfg.lr == 0.5 and cfg.min_size_train == (320, 352)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--rho", "-0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err == ["t: error: argument --rho: must be >= 0, got -0.5 (see --help)"]
