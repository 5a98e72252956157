"""Diffusion over boxes: schedule, DDIM time pairs, ground-truth corruption, the DDIM step and box renewal.

Plain functions in the notation of DDPM/DDIM (Ho et al. 2020; Song et al. 2021): ``alpha_prod_t`` is
the cumulative product of (1 - beta) at timestep t, ``x_t`` the noisy box signal, ``pred_x0`` the network's
estimate of the clean signal. Randomness always comes in as an argument (a ``torch.Generator`` or the
noise itself) so that a run is repeatable. The box signal of one box is its normalised cxcywh mapped
to [-scale, scale] by ``(2 b - 1) * scale``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def cosine_alphas_cumprod(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cumulative alphas of the cosine schedule (Nichol & Dhariwal 2021, eq. 17), in float64.

    1. f(t) = cos(((t / T) + s) / (1 + s) * pi / 2) ** 2 on t = 0..T, alpha_bar(t) = f(t) / f(0).
    2. beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1), clipped at ``max_beta`` to avoid a singular end.
    3. alpha_prod_t = prod_{i <= t} (1 - beta_i), recomputed from the clipped betas.

    Kept in float64, as DiffusionDet's buffers are: at t = 999 alpha_prod_t is 2.4e-9, and DDIM coefficients
    such as sqrt(1 - alpha_prod_next - sigma^2) cancel to 0 in float32 (see ``ddim_coefficients``).

    Returns:
        Tensor[T] float64, ``alphas_cumprod[t]`` for t = 0..T-1, decreasing from ~1 towards 0.
    """
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    t = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    f = torch.cos(((t / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    alpha_bar = f / f[0]
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(0, max_beta)
    return torch.cumprod(1.0 - betas, dim=0)  # (T,) float64


def ddim_time_pairs(timesteps: int, steps: int) -> list[tuple[int, int]]:
    """DDIM (t, t_next) pairs: ``linspace(-1, T - 1, S + 1)`` reversed, consecutive pairs.

    S = 1 -> [(999, -1)]; S = 4 -> [(999, 749), (749, 499), (499, 249), (249, -1)]. t_next = -1 means
    the step returns the predicted clean boxes.
    """
    if steps < 1 or steps > timesteps:
        raise ValueError(f"steps must be in 1..{timesteps}, got {steps}")
    times = torch.linspace(-1, timesteps - 1, steps + 1).to(torch.int64).tolist()[::-1]
    return list(zip(times[:-1], times[1:]))


def boxes_to_signal(boxes_cxcywh: Tensor, scale: float) -> Tensor:
    """Normalised cxcywh in [0, 1] -> diffusion signal in [-scale, scale]."""
    return (boxes_cxcywh * 2.0 - 1.0) * scale


def signal_to_boxes(x: Tensor, scale: float) -> Tensor:
    """Diffusion signal -> normalised cxcywh, clamping the signal to [-scale, scale] first."""
    return (x.clamp(-scale, scale) / scale + 1.0) / 2.0


def q_sample(x0: Tensor, t: Tensor, noise: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """Forward process q(x_t | x_0) = N(sqrt(alpha_prod_t) x0, (1 - alpha_prod_t) I) (DDPM eq. 4).

    Computed in the schedule's precision (float64), returned in ``x0``'s dtype.

    Args:
        x0 (Tensor[B, N, 4]): clean signal; t (Tensor[B]) integer timesteps; noise like ``x0``.
    """
    alpha_prod_t = alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.ndim - 1)))
    return (alpha_prod_t.sqrt() * x0 + (1 - alpha_prod_t).sqrt() * noise).to(x0.dtype)


def pad_ground_truth(gt_boxes_cxcywh: Tensor, num_proposals: int, generator: torch.Generator | None = None) -> Tensor:
    """Fill or subsample ground truth to exactly P boxes, the reference training recipe.

    Missing boxes are random: centre ~ N(0.5, 1/6), size ~ N(0.5, 1/6) clamped to >= 1e-4. With no ground
    truth one whole-image box stands in; with more than P, a random P are kept.

    Args:
        gt_boxes_cxcywh (Tensor[G, 4]): normalised ground truth.
    Returns:
        Tensor[P, 4]: normalised cxcywh.
    """
    device = gt_boxes_cxcywh.device
    if gt_boxes_cxcywh.numel() == 0:
        gt_boxes_cxcywh = torch.tensor([[0.5, 0.5, 1.0, 1.0]], device=device)
    g = gt_boxes_cxcywh.shape[0]
    if g < num_proposals:
        filler = torch.randn(num_proposals - g, 4, generator=generator, device=device) / 6.0 + 0.5  # (P-G, 4)
        filler[:, 2:] = filler[:, 2:].clamp(min=1e-4)
        return torch.cat([gt_boxes_cxcywh, filler], dim=0)  # (P, 4)
    keep = torch.randperm(g, generator=generator, device=device)[:num_proposals]
    return gt_boxes_cxcywh[keep]  # (P, 4)


def corrupt_boxes(
    gt_boxes_cxcywh: Tensor, t: Tensor, noise: Tensor, alphas_cumprod: Tensor, scale: float
) -> Tensor:
    """Training corruption: padded ground truth -> noisy normalised cxcywh boxes at timestep t.

    Args:
        gt_boxes_cxcywh (Tensor[B, P, 4]): output of ``pad_ground_truth`` per image, stacked.
        t (Tensor[B]): timesteps; noise (Tensor[B, P, 4]) standard normal.
    Returns:
        Tensor[B, P, 4]: noisy boxes, normalised cxcywh in [0, 1].
    """
    x0 = boxes_to_signal(gt_boxes_cxcywh, scale)
    x_t = q_sample(x0, t, noise, alphas_cumprod)
    return signal_to_boxes(x_t, scale)


def predict_noise_from_x0(x_t: Tensor, t: int, pred_x0: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """epsilon = (sqrt(1 / alpha_prod_t) x_t - x0) / sqrt(1 / alpha_prod_t - 1), DDPM eq. 4 solved for the noise.

    Computed in float64 (the schedule's precision), returned in the promoted dtype of ``x_t`` and ``pred_x0``.
    """
    alpha_prod_t = float(alphas_cumprod[t])
    out = (x_t.double() * math.sqrt(1.0 / alpha_prod_t) - pred_x0.double()) / math.sqrt(1.0 / alpha_prod_t - 1.0)
    return out.to(torch.promote_types(x_t.dtype, pred_x0.dtype))


def ddim_coefficients(alphas_cumprod: Tensor, t: int, t_next: int, eta: float) -> tuple[float, float, float]:
    """The three DDIM coefficients of the step t -> t_next (Song et al. 2021, eq. 12), in float64.

    1. sigma_t = eta * sqrt((1 - alpha_prod_t / alpha_prod_next) (1 - alpha_prod_next) / (1 - alpha_prod_t)).
    2. direction = sqrt(1 - alpha_prod_next - sigma_t^2), the weight of the predicted noise.
    3. sqrt(alpha_prod_next), the weight of the predicted clean signal.

    Python floats are float64: from t = 999 (alpha_prod_t = 2.4e-9) ``direction`` is 1.11e-4 for S = 4 and 3.55e-5
    for S = 2 with eta = 1, as in the reference, whose schedule buffers are float64; in float32 the subtraction
    cancels to 0 and the next step's boxes move by up to 0.1 px, enough to change later renewal decisions.

    Returns:
        (sqrt_alpha_prod_next, direction, sigma_t).
    """
    alpha_prod_t = float(alphas_cumprod[t])
    alpha_prod_next = float(alphas_cumprod[t_next])
    sigma = eta * math.sqrt((1 - alpha_prod_t / alpha_prod_next) * (1 - alpha_prod_next) / (1 - alpha_prod_t))
    direction = math.sqrt(max(1 - alpha_prod_next - sigma**2, 0.0))
    return math.sqrt(alpha_prod_next), direction, sigma


def ddim_step(
    x_t: Tensor, pred_x0: Tensor, t: int, t_next: int, alphas_cumprod: Tensor, eta: float, noise: Tensor
) -> Tensor:
    """One DDIM update x_t -> x_{t_next} given the predicted clean signal (Song et al. 2021, eq. 12).

    1. pred_epsilon from x_t and pred_x0 (``predict_noise_from_x0``).
    2. sigma_t and the noise direction from ``ddim_coefficients`` (float64).
    3. x_next = sqrt(alpha_prod_next) pred_x0 + sqrt(1 - alpha_prod_next - sigma_t^2) pred_epsilon + sigma_t noise.
    With t_next < 0 the step returns ``pred_x0``.

    The update is computed in float64 and returned in ``x_t``'s dtype: a sampler that keeps ``x_t`` in float64
    follows the reference, whose box signal becomes float64 after its first step.

    Args:
        x_t, pred_x0, noise (Tensor[..., 4]): signals of the same shape.
    """
    if t_next < 0:
        return pred_x0
    pred_epsilon = predict_noise_from_x0(x_t.double(), t, pred_x0.double(), alphas_cumprod)
    sqrt_alpha_prod_next, direction, sigma = ddim_coefficients(alphas_cumprod, t, t_next, eta)
    x_next = sqrt_alpha_prod_next * pred_x0.double() + direction * pred_epsilon + sigma * noise.double()
    return x_next.to(x_t.dtype)


def renew_boxes(x_next: Tensor, keep: Tensor, fresh: Tensor) -> Tensor:
    """Box renewal: slots whose box did not pass the score threshold get fresh signal.

    Slots keep their index (the reference concatenates kept and new boxes instead; the set is the same), so a
    proposal's path can be followed across steps.

    Args:
        x_next (Tensor[B, N, 4]): signal after the DDIM step; keep (Tensor[B, N]) bool; fresh like ``x_next``.
    """
    return torch.where(keep.unsqueeze(-1), x_next, fresh)
