import torch

from diffdet.backbone import Backbone, load_pretrained_body
from diffdet.head import multilevel_roi_align, roi_levels
from diffdet.model import build_model, resize_for_model


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
