"""Procedural textures for the rendered scenes: table tops (wood with planks, dark joints and knots; laminate, stone,
paint), floors, walls, and distractor surfaces (plain colours, patterns, printed packaging). Each is a pure
function of an ``np.random.Generator``; all return RGB uint8 arrays."""
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


PLANK_PROB = 0.65                             # share of wooden tops made of planks with dark joints
PLANKS_PER_TEXTURE = (5, 14)                  # the texture spans 1.2-1.9 m: planks about 9-38 cm wide
JOINT_WIDTH_PX = (2.0, 7.0)                   # dark joint lines between planks, at 1024 px (about 2-13 mm)


def wood_texture(rng: np.random.Generator, size: int = TEXTURE_SIZE, planks: bool | None = None,
                 knots: bool = True) -> np.ndarray:
    """Procedural wood: multi-scale grain streaks along a gently warped direction (weak or strong), faint ring
    lines, up to four knots (dark eyes the rings bend around; none when ``knots`` is False) and, in ``PLANK_PROB``
    of tops (always when ``planks`` is True, never when False), planks across the grain separated by dark joint
    lines, in one of a few common finishes.

    The texture spans the table's diameter (1.2-1.9 m). Returns (size, size, 3) uint8 RGB.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, np.pi)
    v = -xx * np.sin(theta) + yy * np.cos(theta)      # across the grain
    v = v + rng.uniform(0.01, 0.04) * _smooth_noise(rng, (size, size), 2) \
        + rng.uniform(0.002, 0.006) * _smooth_noise(rng, (size, size), 8)
    knot_dark = np.zeros_like(xx)
    for _ in range(rng.integers(0, 5) if knots else 0):   # knots bend the rings around a point and are dark
        kx, ky = rng.uniform(0.05, 0.95, 2)
        r2 = rng.uniform(1e-4, 6e-4)
        eye = np.exp(-((xx - kx) ** 2 + (yy - ky) ** 2) / r2)
        v = v + rng.uniform(0.002, 0.008) * eye
        knot_dark = np.maximum(knot_dark, rng.uniform(0.2, 0.6) * np.exp(-((xx - kx) ** 2 + (yy - ky) ** 2)
                                                                        / (r2 * rng.uniform(0.05, 0.3))))
    joint = np.zeros_like(xx)
    if planks if planks is not None else rng.random() < PLANK_PROB:   # planks across the grain, dark joints
        n = int(rng.integers(PLANKS_PER_TEXTURE[0], PLANKS_PER_TEXTURE[1] + 1))
        across = (-xx * np.sin(theta) + yy * np.cos(theta) + 2.0) * n   # in [0, 3n]
        plank = np.floor(across).astype(np.int32)
        v = v + rng.uniform(0, 1, size=3 * n + 2).astype(np.float32)[plank]
        distance_px = np.abs(across - np.round(across)) * size / n        # to the nearest joint, in pixels
        half = rng.uniform(*JOINT_WIDTH_PX) / 2 * size / 1024
        joint = np.clip(1.5 - distance_px / half, 0, 1) * rng.uniform(0.45, 0.8)
    # Grain: multi-scale 1D noise across the grain (streaks of every width), plus faint sharp ring lines.
    grid = np.arange(8192)
    grain = np.zeros_like(v)
    for freq, amp in ((25, 0.5), (80, 0.3), (250, 0.2), (900, 0.12)):
        profile = rng.normal(size=8192).astype(np.float32)
        grain += amp * np.interp((v * freq * rng.uniform(0.7, 1.4)) % 8192, grid, profile).astype(np.float32)
    rings = (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(15, 45) * v + rng.uniform(0, 2 * np.pi))) ** 6
    strength = rng.uniform(0.05, 0.12) if rng.random() < 0.5 else rng.uniform(0.15, 0.3)   # weak or strong grain
    mix = 0.55 + strength * grain - rng.uniform(0.0, 0.2) * rings \
        + 0.08 * _smooth_noise(rng, (size, size), 5) + 0.08 * _smooth_noise(rng, (size, size), 2)
    light, dark = _WOODS[rng.integers(len(_WOODS))] * rng.uniform(0.9, 1.1)
    img = dark + (light - dark) * np.clip(mix, 0, 1)[..., None]
    img *= (1 - np.maximum(joint, knot_dark))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


TABLE_KINDS = {"wood": 0.7, "laminate": 0.12, "stone": 0.08, "painted": 0.1}  # share of each kind of table top


def table_texture(rng: np.random.Generator, size: int = TEXTURE_SIZE, kind: str | None = None) -> np.ndarray:
    """A table top: wood (``wood_texture``, most often), plain laminate or melamine with faint speckle, stone-like
    speckle, or a painted top with brush streaks; ``kind`` (one of ``TABLE_KINDS``) is drawn from their shares
    when None. (size, size, 3) uint8 RGB. Raises ValueError for an unknown kind.
    """
    kinds = list(TABLE_KINDS)
    if kind is None:
        weights = np.array([TABLE_KINDS[k] for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    elif kind not in TABLE_KINDS:
        raise ValueError(f"unknown table kind {kind!r}; expected one of {kinds}")
    if kind == "wood":
        return wood_texture(rng, size)
    img = np.empty((size, size, 3), np.float32)
    if kind == "laminate":       # white, grey, beige or pale wood-coloured sheet
        img[:] = _PAINTS[rng.integers(len(_PAINTS))] * rng.uniform(0.75, 1.1)
        img += (rng.uniform(2, 6) * rng.normal(size=(size, size))).astype(np.float32)[..., None]
    elif kind == "stone":        # granite-like: speckle of dark and light grains over a mottled base
        img[:] = rng.uniform(60, 200) * rng.uniform(0.92, 1.08, 3)
        img += (25 * _smooth_noise(rng, (size, size), 12))[..., None]
        speckle = cv2.GaussianBlur(rng.normal(size=(size, size)).astype(np.float32), (0, 0), 1.0)
        img += (rng.uniform(20, 45) * speckle)[..., None]
    else:                        # painted: a saturated or dark colour with long brush streaks
        img[:] = rng.uniform(20, 200, size=3)
        streak = cv2.resize(rng.normal(size=(size, 16)).astype(np.float32), (size, size),
                            interpolation=cv2.INTER_LINEAR)
        img += (rng.uniform(3, 10) * streak)[..., None]
    img *= (1 + 0.06 * _smooth_noise(rng, (size, size), 4))[..., None]
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


# dominant colours of the PROPS objects (red, yellow, blue, white) first, then other common plastic/paint colours
DISTRACTOR_COLOURS = np.array([[200, 30, 30], [230, 200, 40], [40, 70, 190], [235, 235, 230], [240, 130, 30],
                               [40, 150, 60], [25, 25, 28], [130, 130, 135], [120, 70, 40], [150, 60, 160],
                               [80, 190, 210], [230, 120, 160]], dtype=np.float32)
DISTRACTOR_TEXTURE_KINDS = {"plain": 0.45, "pattern": 0.2, "packaging": 0.35}


def distractor_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Surface of a distractor object, drawn from ``DISTRACTOR_TEXTURE_KINDS``: a plain saturated colour (the PROPS
    objects' red, yellow, blue and white among them, so colour alone cannot mean a PROPS class) with faint mottling,
    a random pattern (stripes, checks, dots or noise in two colours), or printed packaging (``packaging_texture``).

    Returns (size, size, 3) uint8 RGB.
    """
    kinds = list(DISTRACTOR_TEXTURE_KINDS)
    weights = np.array([DISTRACTOR_TEXTURE_KINDS[k] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    if kind == "packaging":
        return packaging_texture(rng, size)
    colour = DISTRACTOR_COLOURS[rng.integers(len(DISTRACTOR_COLOURS))] * rng.uniform(0.8, 1.1, 3)
    img = np.empty((size, size, 3), np.float32)
    img[:] = colour
    if kind == "pattern":
        other = rng.uniform(0, 255, size=3)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        period = rng.uniform(8, 64)
        style = int(rng.integers(4))
        if style == 0:
            mask = np.sin(2 * np.pi * (xx * rng.uniform(-1, 1) + yy) / period) > 0
        elif style == 1:
            mask = ((xx // period + yy // period) % 2) > 0
        elif style == 2:
            mask = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period / 4) ** 2
        else:
            mask = _smooth_noise(rng, (size, size), int(rng.integers(4, 16))) > 0
        img[mask] = other
    img *= (1 + 0.06 * _smooth_noise(rng, (size, size), 6))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)
