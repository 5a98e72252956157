"""Procedural textures for the rendered scenes: wooden table tops, floors, walls, and printed packaging for the
distractor objects. Each is a pure function of an ``np.random.Generator``; all return RGB uint8 arrays."""
from __future__ import annotations

import cv2
import numpy as np

TEXTURE_SIZE = 1024                           # table textures; YCB textures are downscaled to this too

def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Band-limited noise in about [-1, 1]: a cells x cells random grid, bicubically upsampled."""
    grid = rng.normal(size=(cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(grid, (shape[1] * (cells + 3) // cells, shape[0] * (cells + 3) // cells),
                     interpolation=cv2.INTER_CUBIC)
    oy, ox = big.shape[0] // (cells + 3), big.shape[1] // (cells + 3)
    return big[oy:oy + shape[0], ox:ox + shape[1]] / 1.5


_WOODS = np.array([  # light, dark RGB of common table finishes: oak, walnut, cherry, maple, teak, pine, grey-wash
    [[196, 152, 102], [140, 96, 56]], [[120, 80, 50], [66, 40, 24]], [[170, 96, 60], [110, 52, 30]],
    [[222, 190, 142], [180, 138, 88]], [[160, 110, 62], [104, 66, 34]], [[214, 172, 116], [170, 118, 64]],
    [[172, 160, 146], [120, 108, 96]],
], dtype=np.float32)


def wood_texture(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Procedural wood: multi-scale grain streaks along a gently warped direction, faint ring lines, optional knots
    and planks, in one of a few common finishes.

    The texture spans the table's diameter (0.9-1.5 m). Returns (size, size, 3) uint8 RGB.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, np.pi)
    v = -xx * np.sin(theta) + yy * np.cos(theta)      # across the grain
    v = v + rng.uniform(0.01, 0.04) * _smooth_noise(rng, (size, size), 2) \
        + rng.uniform(0.002, 0.006) * _smooth_noise(rng, (size, size), 8)
    for _ in range(rng.integers(0, 3)):               # knots bend the rings around a point
        kx, ky = rng.uniform(0.1, 0.9, 2)
        v = v + rng.uniform(0.002, 0.008) * np.exp(-((xx - kx) ** 2 + (yy - ky) ** 2) / rng.uniform(1e-4, 6e-4))
    seam = np.zeros_like(xx, dtype=bool)
    if rng.random() < 0.25:                           # planks across the grain: each shifts its rings
        n = int(rng.integers(3, 7))
        across = (-xx * np.sin(theta) + yy * np.cos(theta) + 2.0) * n   # in [0, 3n]
        plank = np.floor(across).astype(np.int32)
        v = v + rng.uniform(0, 1, size=3 * n + 2).astype(np.float32)[plank]
        seam = np.abs(across - np.round(across)) < n * 1.5 / size
    # Grain: multi-scale 1D noise across the grain (streaks of every width), plus faint sharp ring lines.
    grid = np.arange(8192)
    grain = np.zeros_like(v)
    for freq, amp in ((25, 0.5), (80, 0.3), (250, 0.2), (900, 0.12)):
        profile = rng.normal(size=8192).astype(np.float32)
        grain += amp * np.interp((v * freq * rng.uniform(0.7, 1.4)) % 8192, grid, profile).astype(np.float32)
    rings = (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(15, 45) * v + rng.uniform(0, 2 * np.pi))) ** 6
    mix = 0.55 + rng.uniform(0.05, 0.12) * grain - rng.uniform(0.0, 0.12) * rings \
        + 0.08 * _smooth_noise(rng, (size, size), 5) + 0.08 * _smooth_noise(rng, (size, size), 2)
    light, dark = _WOODS[rng.integers(len(_WOODS))] * rng.uniform(0.9, 1.1)
    img = dark + (light - dark) * np.clip(mix, 0, 1)[..., None]
    img[seam] *= 0.75
    return np.clip(img, 0, 255).astype(np.uint8)


_FLOORS = np.array([[128, 128, 126], [190, 178, 155], [120, 96, 72], [108, 118, 132], [112, 128, 112],
                    [72, 72, 76], [205, 205, 198], [150, 60, 55]], dtype=np.float32)  # lab/office floor colours
_PAINTS = np.array([[228, 228, 222], [216, 210, 194], [190, 193, 196], [186, 200, 214], [192, 206, 186],
                    [212, 196, 170], [150, 155, 160]], dtype=np.float32)


def floor_texture(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Procedural floor covering FLOOR_EXTENT metres: tiles, linoleum speckle, carpet or concrete. RGB uint8."""
    base = _FLOORS[rng.integers(len(_FLOORS))] * rng.uniform(0.85, 1.1) * rng.uniform(0.96, 1.04, 3)
    kind = rng.integers(4)
    img = np.empty((size, size, 3), np.float32)
    img[:] = base
    img *= (1 + rng.uniform(0.03, 0.1) * _smooth_noise(rng, (size, size), 8))[..., None]
    speckle = rng.normal(size=(size, size)).astype(np.float32)
    if kind == 0:                                                   # square tiles with grout lines
        n = int(rng.integers(12, 28))
        tile = (np.arange(size) * n // size)
        img += rng.normal(0, 5, size=(n, n, 1)).astype(np.float32)[tile[:, None], tile[None, :]]
        grout = ((np.arange(size) * n) % size) < max(1, size // (n * 25))
        img[grout[:, None] | grout[None, :]] *= 0.75
    elif kind == 1:                                                 # linoleum: fine speckle
        img += (8 * speckle)[..., None]
    elif kind == 2:                                                 # carpet: blurred speckle
        img += (14 * cv2.GaussianBlur(speckle, (0, 0), 1.2))[..., None]
    else:                                                           # concrete: low-frequency blotches
        img += (12 * _smooth_noise(rng, (size, size), 24))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


FLOOR_EXTENT = 8.0  # metres covered by a floor texture (it wraps beyond)


def wall_texture(rng: np.random.Generator, width: int = 1536, height: int = 320) -> np.ndarray:
    """A strip covering the room's four walls (u = perimeter, v = height, top row = ceiling): paint, baseboard,
    and lab furniture as blurred rectangles (doors, cabinets, shelves with clutter, windows, posters). RGB uint8."""
    paint = _PAINTS[rng.integers(len(_PAINTS))] * rng.uniform(0.85, 1.05) * rng.uniform(0.97, 1.03, 3)
    img = np.empty((height, width, 3), np.float32)
    img[:] = paint
    img += (6 * _smooth_noise(rng, (height, width), 10))[..., None]
    floor_row = height - 1
    for _ in range(rng.integers(6, 16)):
        w = int(rng.uniform(0.03, 0.12) * width)
        h = int(rng.uniform(0.25, 0.8) * height)
        x0 = int(rng.integers(0, width - w))
        kind = rng.integers(5)
        color = _PAINTS[rng.integers(len(_PAINTS))] * rng.uniform(0.3, 1.0)   # cabinets: greys, beige, dark
        if rng.random() < 0.25:                                     # now and then a coloured one
            color = 0.5 * color + 0.5 * rng.uniform(30, 230, size=3)
        if kind == 0:                                               # window / light panel: bright
            color = np.full(3, rng.uniform(225, 255))
            y0 = int(rng.uniform(0.1, 0.3) * height)
        elif kind == 1:                                             # poster / whiteboard high on the wall
            color = rng.uniform(40, 240, size=3) if rng.random() < 0.5 else np.full(3, rng.uniform(200, 245))
            y0 = int(rng.uniform(0.15, 0.4) * height)
            h = int(h * 0.4)
        else:                                                       # door, cabinet, shelf standing on the floor
            y0 = floor_row - h
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), color.tolist(), -1)
        if kind >= 3:                                               # shelves: rows of small coloured items
            for row in range(y0 + 6, y0 + h - 4, max(8, h // 5)):
                cv2.line(img, (x0, row), (x0 + w, row), (color * 0.6).tolist(), 2)
                for _ in range(int(rng.integers(2, 8))):
                    ix = int(rng.integers(x0, x0 + max(w - 4, 1)))
                    cv2.rectangle(img, (ix, row - int(rng.integers(3, 8))), (ix + int(rng.integers(2, 6)), row),
                                  rng.uniform(20, 240, size=3).tolist(), -1)
    base_h = max(2, height // 40)
    img[floor_row - base_h:] = _PAINTS[rng.integers(len(_PAINTS))] * rng.uniform(0.3, 0.9)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Scene sampling (pure: everything random comes from the generator passed in)
# ---------------------------------------------------------------------------------------------------------------


def packaging_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Printed-packaging look for distractor objects: a base colour, bands and blocks of other colours, a few
    text-like strokes and speckle, so a distractor is as busy as a real product but is no PROPS object.

    Returns (size, size, 3) uint8 RGB.
    """
    base = rng.uniform(20, 240, size=3)
    img = np.empty((size, size, 3), np.float32)
    img[:] = base
    for _ in range(int(rng.integers(1, 6))):            # bands and blocks
        color = rng.uniform(0, 255, size=3)
        if rng.random() < 0.5:
            y0, h = int(rng.integers(0, size)), int(rng.integers(size // 20, size // 3))
            img[y0:y0 + h] = color
        else:
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(size // 10, size // 2, 2)
            cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), color.tolist(), -1)
    img = np.clip(img, 0, 255).astype(np.uint8)          # OpenCV draws text on 8-bit images only
    for _ in range(int(rng.integers(0, 5))):            # text-like strokes
        text = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 9))))
        org = (int(rng.integers(0, size // 2)), int(rng.integers(size // 8, size)))
        cv2.putText(img, text, org, int(rng.integers(0, 8)), float(rng.uniform(0.4, 1.6)),
                    rng.uniform(0, 255, size=3).tolist(), int(rng.integers(1, 4)), cv2.LINE_AA)
    if rng.random() < 0.4:                              # a round logo
        centre = tuple(int(c) for c in rng.integers(size // 5, 4 * size // 5, 2))
        cv2.circle(img, centre, int(rng.integers(size // 12, size // 4)), rng.uniform(0, 255, 3).tolist(), -1)
    img = img + (rng.uniform(2, 12) * _smooth_noise(rng, (size, size), 6))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)
