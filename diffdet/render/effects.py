"""Camera effects applied to a rendered scene: what turns a clean render into a webcam- or phone-like photo.

Pure image functions: ``(H, W, 3) float32 RGB 0-255`` in, uint8 out; every random choice is in ``post`` (drawn by
``scene.sample_camera_effects``), so an image depends only on its scene.
"""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from diffdet.render.textures import _smooth_noise


def disk_kernel(radius: float) -> np.ndarray:
    """Normalised (2r+1)^2 disk: the point-spread function of an out-of-focus lens."""
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    kernel = np.clip(radius + 0.5 - np.sqrt(xx ** 2 + yy ** 2), 0, 1).astype(np.float32)  # anti-aliased rim
    return kernel / kernel.sum()


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Normalised line of ``length`` pixels at ``angle_deg``: the blur of a camera moving during the exposure."""
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = np.cos(np.radians(angle_deg)) * length / 2, np.sin(np.radians(angle_deg)) * length / 2
    cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1,
             cv2.LINE_AA)
    return kernel / kernel.sum()


def camera_effects(image: np.ndarray, foreground: np.ndarray, post: Mapping[str, Any]) -> np.ndarray:
    """Auto-exposure on the table, white balance, saturation, contrast, gamma, illumination falloff and vignetting,
    soft focus, defocus, motion blur, sensor noise, then downscale-and-upscale (a low-resolution camera).

    image: (H, W, 3) float32 RGB 0-255; foreground: (H, W) float32 in [0, 1]. Returns uint8 RGB. ``post`` keys
    missing from older specs (defocus, motion, downscale) mean "off".
    """
    H, W = image.shape[:2]
    to_luma = np.array([0.299, 0.587, 0.114], np.float32)
    luma = image[::4, ::4] @ to_luma
    weight = foreground[::4, ::4] if foreground[::4, ::4].sum() > 10 else np.ones_like(luma)
    gain = np.clip(post["exposure"] / max(float((luma * weight).sum() / weight.sum()), 1.0), 0.6, 2.0)
    img = image * (gain * np.asarray(post["white_balance"], np.float32))
    gray = (img @ to_luma)[..., None]
    img = gray + np.float32(post["saturation"]) * (img - gray)
    img = np.clip(128 + np.float32(post["contrast"]) * (img - 128), 0, 255)
    lut = (255 * (np.arange(256, dtype=np.float32) / 255) ** post["gamma"]).astype(np.float32)
    img = lut[img.astype(np.uint8)]
    # A lamp's falloff over the scene and lens vignetting: one smooth multiplicative map.
    yy, xx = np.mgrid[0:H // 8, 0:W // 8].astype(np.float32)
    r2 = ((xx - W / 16) / (W / 16)) ** 2 + ((yy - H / 16) / (H / 16)) ** 2
    falloff = _smooth_noise(np.random.default_rng(post["falloff_seed"]), (H // 8, W // 8), 2)
    shade = (1 - post["vignette"] * r2 / 2) * (1 + post["falloff"] * falloff)
    img *= cv2.resize(shade, (W, H), interpolation=cv2.INTER_LINEAR)[..., None]
    if post["blur"] > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), post["blur"])
    if post.get("defocus", 0.0) > 0.5:
        img = cv2.filter2D(img, -1, disk_kernel(post["defocus"]), borderType=cv2.BORDER_REFLECT)
    if post.get("motion", 0.0) > 1.0:
        img = cv2.filter2D(img, -1, motion_kernel(post["motion"], post.get("motion_angle", 0.0)),
                           borderType=cv2.BORDER_REFLECT)
    noise = np.random.default_rng(post["noise_seed"]).standard_normal(size=img.shape, dtype=np.float32)
    img = img + noise * np.float32(post["noise"])
    factor = post.get("downscale", 1.0)
    if factor < 0.99:
        small = cv2.resize(img, (max(1, round(W * factor)), max(1, round(H * factor))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    return np.clip(img, 0, 255).astype(np.uint8)
