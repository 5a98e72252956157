import numpy as np
import torch

from diffdet.backbone import Backbone, load_pretrained_body
import pytest

from diffdet.head import RoIPooler, multilevel_roi_align, roi_levels
from diffdet.model import build_model, resize_for_model, shortest_edge_size


def test_roi_levels_follow_fpn_rule():
    sides = torch.tensor([10.0, 111.0, 112.0, 223.0, 224.0, 448.0, 2000.0])
    boxes = torch.stack([torch.zeros(7), torch.zeros(7), sides, sides], dim=1)
    # floor(4 + log2(side / 224)) clamped to [2, 5].
    assert roi_levels(boxes).tolist() == [2, 2, 3, 3, 4, 5, 5]


def test_multilevel_roi_align_reads_the_right_level():
    # Each level filled with its own index: the pooled value tells which level a box was read from.
    feats = [torch.full((1, 2, 512 // s, 512 // s), float(i + 2)) for i, s in enumerate((4, 8, 16, 32))]
    boxes = torch.tensor([[[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 150.0, 150.0], [10.0, 10.0, 250.0, 250.0],
                           [0.0, 0.0, 500.0, 500.0]]])
    out = multilevel_roi_align(feats, boxes, (4, 8, 16, 32), 7, 2)
    assert out.shape == (4, 2, 7, 7)
    assert out[:, 0, 3, 3].tolist() == [2.0, 3.0, 4.0, 5.0]


def _random_boxes(generator, batch, num, height, width):
    """Boxes of every size, some touching or crossing the padded input's edges."""
    centre = torch.rand(batch, num, 2, generator=generator) * torch.tensor([width, height]) * 1.2 - 10
    size = torch.rand(batch, num, 2, generator=generator) ** 2 * torch.tensor([width, height]) + 0.5
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_roi_pooler_matches_torchvision_roi_align(ratio):
    generator = torch.Generator().manual_seed(ratio)
    height, width, strides = 480, 640, (4, 8, 16, 32)
    feats = [torch.randn(2, 5, height // s, width // s, generator=generator) for s in strides]
    boxes = _random_boxes(generator, 2, 60, height, width)
    boxes[0, 0] = torch.tensor([-30.0, -30.0, -12.0, -12.0])  # wholly outside: reads zeros
    boxes[1, 0] = torch.tensor([630.0, 470.0, 650.0, 490.0])  # past the bottom-right corner
    boxes[1, 1] = torch.tensor([0.0, 0.0, 640.0, 480.0])  # the whole image: level 5
    expected = multilevel_roi_align(feats, boxes, strides, 7, ratio).flatten(2).transpose(1, 2)
    got = RoIPooler(feats, strides, 7, ratio)(boxes)
    assert got.shape == (120, 49, 5)
    assert roi_levels(boxes.view(-1, 4)).unique().numel() == 4  # every level exercised
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_roi_pooler_gradient_matches_torchvision_roi_align():
    generator = torch.Generator().manual_seed(0)
    strides = (4, 8, 16, 32)
    feats = [torch.randn(1, 3, 480 // s, 640 // s, generator=generator, requires_grad=True) for s in strides]
    boxes = _random_boxes(generator, 1, 20, 480, 640)
    boxes[0, 0] = torch.tensor([0.0, 0.0, 640.0, 480.0])
    upstream = torch.randn(20, 49, 3, generator=generator)
    (RoIPooler(feats, strides, 7, 2)(boxes) * upstream).sum().backward()
    got = [f.grad.clone() for f in feats]
    for f in feats:
        f.grad = None
    (multilevel_roi_align(feats, boxes, strides, 7, 2).flatten(2).transpose(1, 2) * upstream).sum().backward()
    assert all(f.grad is not None for f in feats)  # every level received boxes
    for g, f in zip(got, feats):
        torch.testing.assert_close(g, f.grad, atol=1e-5, rtol=1e-4)


def test_roi_pooler_refuses_adaptive_sampling():
    with pytest.raises(ValueError, match="sampling ratio"):
        RoIPooler([torch.zeros(1, 1, 4, 4)], (4,), 7, 0)


def test_forward_shapes_and_padding(tiny_cfg, tiny_model):
    images = [torch.randint(0, 255, (3, 50, 70)), torch.randint(0, 255, (3, 64, 40))]
    batch, sizes = tiny_model.preprocess(images)
    assert batch.shape == (2, 3, 64, 96) and sizes.tolist() == [[50, 70], [64, 40]]
    feats = tiny_model.features(batch)
    assert [f.shape[-2:] for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    boxes = torch.tensor([[10.0, 10.0, 30.0, 40.0]]).expand(2, 5, 4)
    out = tiny_model(feats, boxes, torch.tensor([999, 10]))
    L, K = tiny_cfg.num_stages, tiny_cfg.num_classes
    assert out["pred_logits"].shape == (L, 2, 5, K) and out["pred_boxes"].shape == (L, 2, 5, 4)
    assert tiny_model.heatmap_logits(feats).shape == (2, K, 16, 24)


def test_initial_class_probabilities_follow_the_prior(tiny_model):
    feats = tiny_model.features(tiny_model.preprocess([torch.zeros(3, 64, 64)])[0])
    out = tiny_model(feats, torch.tensor([[[0.0, 0.0, 32.0, 32.0]]]), torch.tensor([500]))
    assert out["pred_logits"].sigmoid().mean().item() < 0.1


def test_backward_gives_finite_gradients_and_frozen_stem(tiny_cfg):
    model = build_model(tiny_cfg).train()
    feats = model.features(model.preprocess([torch.rand(3, 64, 64) * 255])[0])
    out = model(feats, torch.tensor([[[4.0, 4.0, 40.0, 50.0], [0.0, 0.0, 64.0, 64.0]]]), torch.tensor([100]))
    loss = out["pred_logits"].sigmoid().sum() + out["pred_boxes"].mean() + model.heatmap_logits(feats).mean()
    loss.backward()
    head_grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in head_grads)
    # Small boxes read P2 only, so the other FPN output convs get no gradient here; the rest are finite.
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.heatmap_head.layer[0].weight.grad.abs().sum() > 0
    assert not model.backbone.body._conv_stem.weight.requires_grad


def test_pretrained_weights_load_from_a_local_file(tmp_path, tiny_cfg):
    source = Backbone(tiny_cfg)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in source.body.state_dict().items()}
    state["_fc.weight"] = torch.zeros(1000, 1280)  # classifier keys in the file are ignored
    torch.save(state, tmp_path / "lite0.pth")
    target = Backbone(tiny_cfg)
    missing = load_pretrained_body(target, tmp_path / "lite0.pth")
    assert missing == [] and torch.equal(target.body._conv_stem.weight, state["_conv_stem.weight"])


def test_resize_for_model_keeps_aspect():
    image = torch.zeros(3, 480, 640)
    resized, (fx, fy) = resize_for_model(image, 384, 512)
    assert resized.shape == (3, 384, 512) and fx == fy == 0.8
    same, factors = resize_for_model(image, 480, 640)
    assert same.shape == (3, 480, 640) and factors == (1.0, 1.0)


def test_output_size_follows_detectron2_resize_shortest_edge():
    assert shortest_edge_size(480, 640, 384, 512) == (384, 512)
    assert shortest_edge_size(480, 640, 800, 1333) == (800, 1067)  # 1066.67 rounds up
    assert shortest_edge_size(100, 1000, 800, 1333) == (133, 1333)  # the long side caps the scale
    assert shortest_edge_size(640, 480, 800, 1333) == (1067, 800)  # portrait
    # Halves round up (int(x + 0.5)), where Python's round() would give 12.
    assert shortest_edge_size(4, 10, 5, 100) == (5, 13)


@pytest.mark.parametrize("size_hw, min_max", [((480, 640), (384, 512)), ((61, 83), (200, 400))])
def test_uint8_resize_matches_pil_bilinear(size_hw, min_max):
    from PIL import Image

    # A test image with fine detail (noise on a gradient) so that shrinking filters and rounding matter.
    rng = np.random.default_rng(0)
    h, w = size_hw
    gradient = np.linspace(0, 200, w)[None, :, None] + np.linspace(0, 40, h)[:, None, None]
    image = np.clip(gradient + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    new_h, new_w = shortest_edge_size(h, w, *min_max)
    expected = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR)).astype(np.float32)
    resized, (fx, fy) = resize_for_model(torch.from_numpy(image).permute(2, 0, 1), *min_max)
    assert resized.dtype == torch.float32 and resized.shape == (3, new_h, new_w)
    assert (fx, fy) == (new_w / w, new_h / h)
    got = resized.permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() <= 1.0
    # PIL works on the uint8 pixels and rounds: the result is whole grey levels, unlike a float resize.
    assert np.array_equal(got, np.round(got))
    float_path = torch.nn.functional.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(),
                                                 size=(new_h, new_w), mode="bilinear", align_corners=False,
                                                 antialias=new_h < h)[0].permute(1, 2, 0).numpy()
    assert not np.array_equal(float_path, np.round(float_path))


def test_dynamic_conv_chunks_give_the_same_result(tiny_cfg, monkeypatch):
    from diffdet.head import DynamicConv

    torch.manual_seed(0)
    layer = DynamicConv(tiny_cfg).eval()
    boxes = torch.randn(37, tiny_cfg.hidden_dim)
    roi = torch.randn(37, tiny_cfg.pooler_resolution ** 2, tiny_cfg.hidden_dim)
    whole = layer(boxes, roi)
    monkeypatch.setattr(DynamicConv, "chunk_above", 8)
    monkeypatch.setattr(DynamicConv, "chunk_boxes", 5)
    torch.testing.assert_close(layer(boxes, roi), whole, atol=1e-5, rtol=1e-5)


def test_non_finite_weights_say_so_instead_of_an_index_error(tiny_cfg, rgb_image):
    from diffdet.head import NonFiniteError
    from diffdet.inference import sample

    torch.manual_seed(0)
    model = build_model(tiny_cfg).eval()
    with torch.no_grad():
        model.head.head_series[0].bboxes_delta.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="the model produces non-finite boxes: 16 of 16 boxes from head stage 0"):
        sample(model, [rgb_image])
    features = model.features(model.preprocess([torch.zeros(3, 64, 64)])[0])
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [float("nan"), 0.0, 5.0, 5.0]]])
    with pytest.raises(NonFiniteError, match="1 of 2 boxes from the input boxes"):
        model(features, boxes, torch.zeros(1, dtype=torch.int64))


def test_features_in_chunks_and_table_views_give_the_same_maps(tiny_model):
    torch.manual_seed(0)
    batch = torch.randn(3, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        whole = tiny_model.features(batch)
        chunked = tiny_model.features(batch, chunk=1)
        pooler = tiny_model.head.pooler(whole)
    assert [c.shape for c in chunked] == [w.shape for w in whole]
    for c, w in zip(chunked, whole):
        torch.testing.assert_close(c, w, rtol=1e-4, atol=1e-5)  # per-image convolutions may round differently
    views = pooler.feature_views()
    assert all(torch.equal(v, w) for v, w in zip(views, whole))
    assert all(v.data_ptr() >= pooler.table.data_ptr() for v in views)  # views into the table, not copies


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_with_folded_batch_norm_matches_the_module_by_module_forward(depth):
    from diffdet.backbone import ResNetBody

    torch.manual_seed(0)
    body = ResNetBody(depth, frozen_stages=2).eval()
    for module in body.modules():  # non-trivial frozen statistics, so the fold is really exercised
        if type(module).__name__ == "FrozenBatchNorm2d":
            module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.2, 0.2)
            module.running_mean.uniform_(-0.2, 0.2), module.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, y = [], body.maxpool(body.relu(body.bn1(body.conv1(x))))
        for layer in (body.layer1, body.layer2, body.layer3, body.layer4):
            y = layer(y)  # torchvision's own block forward, BN as a separate module
            expected.append(y)
        got = body(x)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * float(e.abs().max()))


@pytest.mark.parametrize("frozen_stages, trainable_blocks", [(3, 5), (4, 0), (5, 0)])
def test_efficientnet_frozen_stages_up_to_the_configs_maximum(frozen_stages, trainable_blocks):
    # 5 is in the config's range (as the ResNet's "everything"): it raised IndexError for EfficientNet-Lite0
    from diffdet.backbone import EfficientNetLite0Body, ResNetBody

    body = EfficientNetLite0Body(frozen_stages)
    trainable = [b for b in body._blocks if any(p.requires_grad for p in b.parameters())]
    assert len(trainable) == trainable_blocks and not body._conv_stem.weight.requires_grad
    if frozen_stages == 5:
        assert not any(p.requires_grad for p in ResNetBody(18, frozen_stages).parameters())
