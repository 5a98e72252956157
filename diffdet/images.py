"""The one image decoder: every entry point (CLI predict and eval, training datasets, the app) reads pixels here.

The rule, applied in this order:

1. The header is read first (Pillow); an image of more than ``MAX_PIXELS`` pixels is refused before any pixel
   is decoded (decompression bombs), and so is one with a zero side. Any other size is accepted: the model
   resizes and pads every image itself, so a 4000x60 strip is as valid as a 640x480 photo.
2. Animations give their first frame.
3. EXIF orientation is applied (``exif=True``, the default), so a phone photo stored sideways with orientation 6
   comes out upright, as a browser shows it. Datasets whose boxes were drawn on the stored pixels pass
   ``exif=False``; the size they record (``read_image_size``) follows the same flag.
4. Transparency is composited on white (RGBA, LA, PA, palette with a transparent colour), as a browser shows it.
5. 16-bit samples keep their high byte (``value // 256``): grey 16-bit images are reduced by this rule here, and
   Pillow reduces 16-bit colour PNGs the same way while decoding. 32-bit integer samples are clipped to 0-65535
   first. Float samples are 0-1 intensities (``round(value * 255)``, clipped; NaN -> 0).
6. Everything else (grey, palette, CMYK, YCbCr, ...) goes through Pillow's conversion to RGB.

Errors are ``ImageError`` (a ``ValueError``) whose message starts with the file's name and never names a Python
object; ``reason`` holds the message without the name (for UIs that must not show a server path).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

MAX_PIXELS = 40_000_000  # refuse decompression bombs before they fill memory (a 40 MP phone photo still fits)
READABLE_FORMATS = "JPEG, PNG, WebP, BMP, GIF or TIFF"
EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # orientations that swap width and height
_INTEGER_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageError(ValueError):
    """A file that is not a usable image. ``str(exc)`` is ``"<name>: <reason>"``; ``reason`` omits the name."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


def check_image_size(width: int, height: int, name: str = "image", max_pixels: int = MAX_PIXELS) -> None:
    """The one size rule of every entry point: at least 1x1 and at most ``max_pixels`` pixels; no aspect limit.

    Raises:
        ImageError naming the image, its size and the limit.
    """
    if width < 1 or height < 1:
        raise ImageError(name, f"the image is {width}x{height} pixels; it has no pixels to detect in")
    if width * height > max_pixels:
        raise ImageError(name, f"the image has too many pixels: {width}x{height} = {width * height / 1e6:.1f} MP, "
                               f"over the limit of {max_pixels / 1e6:.0f} MP; please resize it")


def _open(source: Path | bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked next
            return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError:
        raise ImageError(name, f"the image has too many pixels (over {MAX_PIXELS / 1e6:.0f} MP)") from None
    except UnidentifiedImageError:
        raise ImageError(name, f"this file is not an image that can be read (expected {READABLE_FORMATS})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(name, f"the image is corrupt or truncated: its header could not be read ({exc})") from None


def _oriented_size(image: Image.Image, exif: bool) -> tuple[int, int]:
    """(width, height) after the EXIF orientation (when ``exif``), from the header only."""
    width, height = image.size
    if exif:
        try:
            orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
        except (OSError, SyntaxError, ValueError):
            orientation = 1  # unreadable EXIF block: the pixels are decoded as stored
        if orientation in _TRANSPOSED_ORIENTATIONS:
            width, height = height, width
    return width, height


def read_image_size(path: str | Path, exif: bool = True) -> tuple[int, int]:
    """(H, W) of an image file from its header, after EXIF orientation when ``exif``; ImageError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(str(path), "image not found")
    with _open(path, str(path)) as image:
        width, height = _oriented_size(image, exif)
    return height, width


def read_image_rgb(path: str | Path, max_pixels: int = MAX_PIXELS, exif: bool = True) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB by the module's rule (EXIF, alpha on white, 16-bit high byte).

    Raises:
        ImageError (a ValueError) naming the file when it is missing, empty, not an image, corrupt or truncated,
        or larger than ``max_pixels``.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(str(path), "image not found")
    if path.stat().st_size == 0:
        raise ImageError(str(path), "the file is empty (0 bytes)")
    return _decode(path, str(path), max_pixels, exif)


def decode_image_rgb(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS, exif: bool = True) -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB by the same rule as ``read_image_rgb``; ``name`` is used in errors."""
    if not data:
        raise ImageError(name, "the file is empty (0 bytes)")
    return _decode(bytes(data), name, max_pixels, exif)


def _decode(source: Path | bytes, name: str, max_pixels: int, exif: bool) -> np.ndarray:
    with _open(source, name) as image:
        width, height = image.size
        check_image_size(width, height, name, max_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.seek(0)
                image.load()
                if exif:
                    image = ImageOps.exif_transpose(image) or image
                return np.ascontiguousarray(_to_rgb_uint8(image))
        except ImageError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError, Image.DecompressionBombError) as exc:
            raise ImageError(name, f"the image is corrupt or truncated: its pixels could not be decoded ({exc})") \
                from None


def _to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """A decoded Pillow image of any mode -> (H, W, 3) uint8 RGB by steps 4-6 of the module's rule."""
    mode = image.mode
    if mode in _INTEGER_16BIT_MODES:
        values = np.asarray(image).astype(np.int64)  # (H, W)
        grey = (np.clip(values, 0, 65535) // 256).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)  # (H, W, 3)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        grey = np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        image = image.convert("RGB")
    return np.array(image)  # a writable copy (torch warns about read-only arrays)


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
