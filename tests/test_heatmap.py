import pytest
import torch

from diffdet.heatmap import decode_peaks, gaussian_radius, peak_sigmas, synthesize_heatmap, synthesize_heatmaps


def test_peaks_are_one_at_box_centres():
    # Box centres at cell centres: (x + 0.5) * stride.
    boxes = torch.tensor([[6.0, 6.0, 38.0, 22.0], [58.0, 18.0, 98.0, 58.0]])
    labels = torch.tensor([1, 3])
    hm = synthesize_heatmap(boxes, labels, 5, (20, 30), stride=4.0)
    assert hm.shape == (5, 20, 30)
    assert hm[1, 3, 5].item() == pytest.approx(1.0)  # centre (22, 14) px -> cell (row 3, col 5)
    assert hm[3, 9, 19].item() == pytest.approx(1.0)  # centre (78, 38) px -> cell (9, 19)
    assert hm[1].flatten().topk(2).values[1] < 1.0  # a single peak per object
    assert hm[[0, 2, 4]].abs().sum() == 0
    assert hm.max() <= 1.0 and hm.min() >= 0.0


def test_off_grid_centre_is_normalised_per_object():
    hm = synthesize_heatmap(torch.tensor([[0.0, 0.0, 13.0, 13.0]]), torch.tensor([0]), 1, (8, 8), stride=4.0)
    assert hm.max().item() == pytest.approx(1.0)


@pytest.mark.parametrize("min_radius,rho", [(4.0, 0.5), (1.0, 0.5), (2.0, 0.1), (0.5, 1.0)])
def test_radius_follows_formula(min_radius, rho):
    boxes = torch.tensor([[0.0, 0.0, 64.0, 32.0]])  # 16 x 8 cells at stride 4
    r = gaussian_radius(boxes, 4.0, min_radius, rho)
    assert r.item() == pytest.approx(max(min_radius, 8 * rho))
    # The map's falloff matches that radius: one cell away from the centre exp(-1 / (2 r^2)).
    hm = synthesize_heatmap(torch.tensor([[0.0, 0.0, 68.0, 36.0]]), torch.tensor([0]), 1, (20, 30), 4.0,
                            min_radius, rho)  # centre (34, 18) px = cell (4, 8); 17 x 9 cells
    radius = max(min_radius, 9 * rho)
    assert hm[0, 4, 8].item() == pytest.approx(1.0)
    assert hm[0, 4, 9].item() == pytest.approx(torch.exp(torch.tensor(-1 / (2 * radius**2))).item(), rel=1e-5)


def test_same_class_objects_merge_by_max():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 0.0, 24.0, 16.0]])
    both = synthesize_heatmap(boxes, torch.tensor([0, 0]), 1, (8, 8), 4.0)
    one = synthesize_heatmap(boxes[:1], torch.tensor([0]), 1, (8, 8), 4.0)
    two = synthesize_heatmap(boxes[1:], torch.tensor([0]), 1, (8, 8), 4.0)
    assert torch.allclose(both, torch.maximum(one, two))


def test_empty_and_bad_inputs():
    assert synthesize_heatmap(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 3, (4, 5), 4.0).sum() == 0
    with pytest.raises(ValueError, match="labels must be in"):
        synthesize_heatmap(torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([3]), 3, (4, 4), 4.0)
    with pytest.raises(ValueError, match="min_radius"):
        synthesize_heatmap(torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([0]), 3, (4, 4), 4.0, min_radius=0)
    with pytest.raises(ValueError, match="shape"):
        synthesize_heatmap(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 3, (4, 4), 4.0)


def test_batched_equals_single():
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 20.0]]), torch.tensor([[4.0, 4.0, 30.0, 12.0], [0.0, 0.0, 8.0, 8.0]])]
    labels = [torch.tensor([0]), torch.tensor([1, 2])]
    batch = synthesize_heatmaps(boxes, labels, 3, (10, 10), 4.0)
    assert torch.equal(batch[1], synthesize_heatmap(boxes[1], labels[1], 3, (10, 10), 4.0))


def test_decode_peaks_finds_the_centres():
    boxes = torch.tensor([[6.0, 6.0, 38.0, 22.0], [58.0, 18.0, 98.0, 58.0]])
    hm = synthesize_heatmap(boxes, torch.tensor([1, 3]), 5, (20, 30), 4.0, min_radius=1.0, rho=0.2)
    peaks = decode_peaks(hm, 4.0, max_peaks=10, min_score=0.5)
    assert sorted(peaks["labels"].tolist()) == [1, 3]
    got = {int(c): xy.tolist() for c, xy in zip(peaks["labels"], peaks["centres_xy"])}
    assert got == {1: [22.0, 14.0], 3: [78.0, 38.0]}


def test_decode_peaks_gives_one_peak_per_plateau():
    # A saturated head predicts exactly equal values over neighbouring cells: one peak, not one per cell.
    hm = torch.zeros(2, 12, 12)
    hm[0, 3:6, 4:8] = 1.0
    hm[1, 9, 9] = 0.6
    peaks = decode_peaks(hm, 4.0, max_peaks=10, min_score=0.1)
    assert peaks["labels"].tolist() == [0, 1]
    assert peaks["cells"].tolist() == [[3, 4], [9, 9]]  # the plateau's first cell in raster order
    assert peaks["centres_xy"][0].tolist() == [18.0, 14.0]


def test_peak_sigmas_read_the_target_blob_widths():
    # Targets of known boxes: sigma = rho * min(w, h) / stride cells along both axes.
    boxes = torch.tensor([[8.0, 8.0, 88.0, 48.0], [120.0, 100.0, 160.0, 220.0]])  # short sides 40 and 40 px
    hm = synthesize_heatmap(boxes, torch.tensor([0, 1]), 2, (64, 64), 4.0, min_radius=1.0, rho=0.5)
    peaks = decode_peaks(hm, 4.0, max_peaks=10, min_score=0.5)
    sigmas = peak_sigmas(hm, peaks)
    assert sigmas.shape == (2, 2)
    assert torch.allclose(sigmas, torch.full((2, 2), 0.5 * 40 / 4), atol=0.3)  # 5 cells, read within 0.3
    # A stretched blob (as a trained head predicts over a tall object) gives a larger sigma along its long axis.
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    tall = torch.exp(-((xs - 20) ** 2) / (2 * 3.0 ** 2) - ((ys - 20) ** 2) / (2 * 7.0 ** 2))[None]
    (sx, sy), = peak_sigmas(tall, decode_peaks(tall, 4.0, max_peaks=1))
    assert abs(sx - 3.0) < 0.3 and abs(sy - 7.0) < 0.3
    # A blob cut by the border is measured to the border on that side.
    edge = torch.exp(-((xs - 1) ** 2 + (ys - 20) ** 2) / (2 * 4.0 ** 2))[None]
    (sx, _), = peak_sigmas(edge, decode_peaks(edge, 4.0, max_peaks=1))
    assert 2.0 < sx < 4.5
    assert peak_sigmas(torch.zeros(1, 8, 8), decode_peaks(torch.zeros(1, 8, 8), 4.0)).shape == (0, 2)
