import pytest
import torch

import math

from diffdet.diffusion import (boxes_to_signal, corrupt_boxes, cosine_alphas_cumprod, ddim_coefficients, ddim_step,
                               ddim_time_pairs, pad_ground_truth, predict_noise_from_x0, q_sample, renew_boxes,
                               signal_to_boxes)


def test_cosine_schedule_golden_values():
    ac = cosine_alphas_cumprod(1000, 0.008)
    assert ac.shape == (1000,) and ac.dtype == torch.float64  # the reference's buffers are float64
    # Golden values of the clipped cosine schedule (T=1000, s=0.008), float64 reference computation.
    expected = {0: 0.99995869, 1: 0.99991256, 249: 0.84701216, 499: 0.49384359, 749: 0.14427210, 999: 2.4287669e-09}
    for t, value in expected.items():
        assert ac[t].item() == pytest.approx(value, rel=1e-5, abs=1e-12)
    assert (ac[1:] < ac[:-1]).all()


# Golden DDIM coefficients (sqrt(alpha_prod_next), sqrt(1 - alpha_prod_next - sigma^2), sigma) for eta = 1, computed
# in float64 from the cosine schedule with Python's math module (the reference's precision), per (S, t, t_next).
DDIM_GOLDEN = {
    (2, 999, 499): (0.7027400589411691, 3.5496289376947094e-05, 0.7114467009547347),
    (4, 999, 749): (0.3798316763853902, 1.1102925651346905e-04, 0.9250556119967969),
    (4, 749, 499): (0.7027400589411691, 0.2957422447736606, 0.6470648609031389),
    (4, 499, 249): (0.9203326362391506, 0.16419670079036716, 0.35500321424270787),
}


@pytest.mark.parametrize("key", sorted(DDIM_GOLDEN))
def test_ddim_coefficients_golden_float64(key):
    steps, t, t_next = key
    assert (t, t_next) in ddim_time_pairs(1000, steps)
    ac = cosine_alphas_cumprod(1000)
    got = ddim_coefficients(ac, t, t_next, eta=1.0)
    for value, expected in zip(got, DDIM_GOLDEN[key]):
        assert value == pytest.approx(expected, rel=1e-9)
    # The noise direction also equals its cancellation-free closed form (1 - a_n) sqrt(a_t / (a_n (1 - a_t))).
    a_t, a_n = ac[t].item(), ac[t_next].item()
    assert got[1] == pytest.approx((1 - a_n) * math.sqrt(a_t / (a_n * (1 - a_t))), rel=1e-6)


def test_first_step_direction_is_not_lost_to_float32_cancellation():
    ac = cosine_alphas_cumprod(1000)
    for steps, expected in ((4, 1.11e-4), (2, 3.55e-5)):
        (t, t_next), *_ = ddim_time_pairs(1000, steps)
        assert ddim_coefficients(ac, t, t_next, eta=1.0)[1] == pytest.approx(expected, rel=2e-3)
        # The same formula evaluated in float32 cancels to (near) zero: the bug this precision avoids.
        a_t, a_n = ac[t].float(), ac[t_next].float()
        sigma = ((1 - a_t / a_n) * (1 - a_n) / (1 - a_t)).sqrt()
        assert (1 - a_n - sigma**2).clamp(min=0).sqrt().item() < expected / 2
    # The step applies it: with pred_x0 = 0 and zero noise, x_next = direction * pred_epsilon.
    x_t = torch.ones(1, 1, 4)
    x_next = ddim_step(x_t, torch.zeros(1, 1, 4), 999, 749, ac, 1.0, torch.zeros(1, 1, 4))
    epsilon = 1 / math.sqrt(1 - ac[999].item())
    assert x_next.dtype == torch.float32
    assert x_next[0, 0, 0].item() == pytest.approx(1.1102925651346905e-04 * epsilon, rel=1e-6)


def test_ddim_time_pairs_golden():
    assert ddim_time_pairs(1000, 1) == [(999, -1)]
    assert ddim_time_pairs(1000, 4) == [(999, 749), (749, 499), (499, 249), (249, -1)]
    assert ddim_time_pairs(1000, 3) == [(999, 665), (665, 332), (332, -1)]
    with pytest.raises(ValueError, match="steps"):
        ddim_time_pairs(1000, 0)


def test_signal_round_trip_and_clamp():
    boxes = torch.tensor([[0.25, 0.5, 0.1, 1.0]])
    assert torch.allclose(signal_to_boxes(boxes_to_signal(boxes, 2.0), 2.0), boxes)
    assert signal_to_boxes(torch.tensor([[9.0, -9.0, 0.0, 0.0]]), 2.0).tolist() == [[1.0, 0.0, 0.5, 0.5]]


def test_pad_ground_truth_shapes_and_sampling():
    g = torch.Generator().manual_seed(0)
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]])
    padded = pad_ground_truth(gt, 10, g)
    assert padded.shape == (10, 4) and torch.equal(padded[:2], gt) and (padded[:, 2:] >= 1e-4).all()
    many = torch.rand(30, 4)
    assert pad_ground_truth(many, 10, g).shape == (10, 4)
    assert torch.equal(pad_ground_truth(torch.zeros(0, 4), 3, g)[0], torch.tensor([0.5, 0.5, 1.0, 1.0]))


def test_corruption_is_clean_at_t0_and_noisy_at_tmax():
    ac = cosine_alphas_cumprod(1000)
    gt = torch.tensor([[[0.5, 0.4, 0.2, 0.3]]])
    noise = torch.randn(1, 1, 4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(corrupt_boxes(gt, torch.tensor([0]), noise, ac, 2.0), gt, atol=0.01)
    noisy = corrupt_boxes(gt, torch.tensor([999]), noise, ac, 2.0)
    assert torch.allclose(noisy, signal_to_boxes(noise, 2.0), atol=1e-3)


def test_noise_prediction_inverts_q_sample():
    ac = cosine_alphas_cumprod(1000)
    x0, noise = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    x_t = q_sample(x0, torch.tensor([300, 300]), noise, ac)
    assert torch.allclose(predict_noise_from_x0(x_t, 300, x0, ac), noise, atol=1e-4)


@pytest.mark.parametrize("steps", [1, 2, 4, 10])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampling_loop_with_oracle_x0_recovers_ground_truth(steps, eta):
    ac = cosine_alphas_cumprod(1000)
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 8, 4, generator=g) * 0.5 + 0.25
    x0 = boxes_to_signal(gt, 2.0)
    x = torch.randn(1, 8, 4, generator=g)
    distances = []
    for t, t_next in ddim_time_pairs(1000, steps):
        x = ddim_step(x, x0, t, t_next, ac, eta, torch.randn(x.shape, generator=g))
        distances.append((x - x0).abs().mean().item())
    assert torch.allclose(signal_to_boxes(x, 2.0), gt, atol=1e-6)
    # With eta = 0 the oracle path moves monotonically towards the ground truth.
    if eta == 0.0:
        assert all(a >= b for a, b in zip(distances, distances[1:]))


def test_renewal_replaces_only_dropped_slots():
    x, fresh = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    keep = torch.tensor([[True, False, True, False]])
    out = renew_boxes(x, keep, fresh)
    assert out[0, :, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
