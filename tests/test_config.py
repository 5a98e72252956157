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
