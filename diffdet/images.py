"""Reading images into the RGB arrays and tensors the detector takes, with clear errors for bad files."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

MAX_PIXELS = 40_000_000  # refuse decompression bombs before they fill memory


def read_image_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; grey, alpha and 16-bit images are converted.

    Raises ValueError naming the file when it is missing, unreadable, empty or larger than ``max_pixels``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ValueError(f"image file is empty: {path}")
    return decode_image_rgb(data.tobytes(), str(path), max_pixels)


def decode_image_rgb(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to (H, W, 3) uint8 RGB; ValueError for anything that is not a usable image."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ValueError(f"{name}: empty file")
    # Read the header size first so a decompression bomb is refused before its pixels are allocated.
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"{name}: not a readable image ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{name}: image is too large ({exc})") from exc
    if width * height > max_pixels:
        raise ValueError(f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}")
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ValueError(f"{name}: the image could not be decoded (corrupt or unsupported format)")
    return to_rgb_uint8(image, name, bgr=True)


def to_rgb_uint8(image: np.ndarray, name: str = "image", bgr: bool = False) -> np.ndarray:
    """Any grey/RGB/RGBA array of uint8/uint16/float -> (H, W, 3) uint8 RGB."""
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"{name}: unsupported pixel type {image.dtype}")
        scale = 255.0 if image.size and float(np.nanmax(image)) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image) * scale, 0, 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name}: expected a grey, RGB or RGBA image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if bgr:
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def image_to_tensor(image: np.ndarray | Tensor) -> Tensor:
    """(H, W, 3) uint8 RGB array or (3, H, W) tensor -> (3, H, W) tensor; ValueError for other shapes."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must be (H, W, 3) RGB, got shape {image.shape}")
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensor must be (3, H, W), got shape {tuple(image.shape)}")
        return image
    raise ValueError(f"image must be a numpy array or a tensor, got {type(image).__name__}")
