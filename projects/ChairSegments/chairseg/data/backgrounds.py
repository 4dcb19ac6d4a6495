"""Backgrounds for the procedural Chair Segments generator.

Chair Segments composites chair cut-outs onto about 10,000 indoor and outdoor photographs. Without
photographs we draw scenes with the cues a segmenter must learn to ignore: rooms with a horizon,
perspective floors (planks, tiles), walls with windows and frames (thin straight bars, like chair
slats), outdoor sky/ground, clutter of rectangles and thin lines, and noise textures. Real photos
can be mixed in: scikit-image ships a few (``skimage.data``: astronaut, coffee, chelsea, rocket,
motorcycle, brick, grass, gravel...), or any folder of pictures the user has.

Every function draws from a ``numpy.random.Generator`` it is given, so a seed fixes the picture.
"""

from __future__ import annotations

import colorsys
import os
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from semseg_heads.utils.io import IMAGE_EXTENSIONS

# scikit-image sample pictures usable as backgrounds (photographs and natural textures),
# read straight from the package folder: no download is ever triggered.
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "rocket.jpg",
    "moon.png",
    "text.png",
    "color.png",
)


def skimage_photo_paths() -> list[str]:
    """Paths of scikit-image's bundled sample photos; raises ImportError when it is absent."""
    try:
        import skimage
    except ImportError as e:
        raise ImportError(
            "backgrounds='photos'/'mixed' without background_dir uses scikit-image's sample photos: "
            "pip install scikit-image (or pass background_dir=<folder of pictures>)"
        ) from e
    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    paths = [os.path.join(folder, n) for n in SKIMAGE_PHOTOS if os.path.isfile(os.path.join(folder, n))]
    if not paths:
        raise FileNotFoundError(f"no sample photos found in {folder}")
    return paths


def folder_photo_paths(folder: str) -> list[str]:
    paths = sorted(
        os.path.join(folder, n) for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise FileNotFoundError(
            f"background_dir '{folder}' holds no pictures ({', '.join(IMAGE_EXTENSIONS)})"
        )
    return paths


@lru_cache(maxsize=4)
def load_photos(paths: tuple[str, ...], max_side: int = 512) -> tuple[np.ndarray, ...]:
    """Decode each photo once per process (RGB uint8, longest side at most ``max_side``)."""
    photos = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            if max(im.size) > max_side:
                s = max_side / max(im.size)
                im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
            photos.append(np.asarray(im))
    return tuple(photos)


def random_color(rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """An RGB colour in [0, 1] from a family typical of rooms and furniture."""
    kind = kind or rng.choice(["muted", "muted", "vivid", "dark", "light", "wood"])
    if kind == "vivid":
        h, s, v = rng.random(), rng.uniform(0.5, 0.95), rng.uniform(0.4, 0.95)
    elif kind == "dark":
        h, s, v = rng.random(), rng.uniform(0.0, 0.4), rng.uniform(0.04, 0.25)
    elif kind == "light":
        h, s, v = rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.78, 0.98)
    elif kind == "wood":
        h, s, v = rng.uniform(0.04, 0.11), rng.uniform(0.35, 0.8), rng.uniform(0.22, 0.8)
    elif kind == "metal":
        h, s, v = rng.random(), rng.uniform(0.0, 0.08), rng.uniform(0.4, 0.85)
    else:  # muted
        h, s, v = rng.random(), rng.uniform(0.05, 0.45), rng.uniform(0.3, 0.9)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random ``cells`` x ``cells`` grid upsampled bicubically."""
    grid = rng.random((cells, cells), dtype=np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC))


def fractal_noise(rng: np.random.Generator, size: int, octaves: int = 3, base: int = 3) -> np.ndarray:
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        out += amp * value_noise(rng, size, min(size, base * 2**o))
        total += amp
        amp *= 0.5
    return out / total


def _lerp(c0: np.ndarray, c1: np.ndarray, t: np.ndarray) -> np.ndarray:
    return c0 + (c1 - c0) * t[..., None]


def _textured(rng, size, color, amount):
    n = fractal_noise(rng, size, octaves=3, base=int(rng.integers(2, 9)))
    return color * (1.0 + amount * (n[..., None] - 0.5) * 2)


def _floor(rng, size, horizon, color):
    """A floor in perspective below ``horizon``: planks, tiles, carpet or plain."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    depth = 1.0 / np.maximum(y - horizon + 1.0, 1.0)  # 1/distance on the ground plane
    u = (x - rng.uniform(0, size)) * depth
    v = depth * size
    kind = rng.choice(["planks", "tiles", "carpet", "plain"])
    base = _textured(rng, size, color, rng.uniform(0.05, 0.3))
    if kind == "planks":
        period = rng.uniform(0.15, 0.5)
        stripes = (np.mod(u / period, 1.0) < rng.uniform(0.04, 0.12)).astype(np.float32)
        base = base * (1 - rng.uniform(0.15, 0.45) * stripes[..., None])
    elif kind == "tiles":
        s = rng.uniform(0.2, 0.8)
        check = (np.floor(u / s) + np.floor(v * s / 4)) % 2
        other = random_color(rng)
        base = np.where(
            check[..., None] > 0, base, _lerp(base, other, np.full((size, size), 0.6, np.float32))
        )
    elif kind == "carpet":
        base = _textured(rng, size, color, 0.5)
    return base


def _room(rng, size):
    horizon = rng.uniform(0.25, 0.75) * size
    wall = _textured(rng, size, random_color(rng), rng.uniform(0.0, 0.2))
    if rng.random() < 0.3:  # striped wallpaper
        x = np.arange(size, dtype=np.float32)
        stripes = (np.mod(x / rng.uniform(3, 12), 1.0) < 0.5).astype(np.float32)
        wall = wall * (1 - rng.uniform(0.05, 0.25) * stripes[None, :, None])
    floor = _floor(rng, size, horizon, random_color(rng, rng.choice(["wood", "muted", "dark", "light"])))
    y = np.arange(size, dtype=np.float32)[:, None, None]
    img = np.where(y < horizon, wall, floor)
    im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(rng.integers(0, 4)):  # windows, frames, doors, shelves: straight bars
        w, h = rng.uniform(0.1, 0.5) * size, rng.uniform(0.1, 0.6) * size
        x0, y0 = rng.uniform(-0.2, 1.0) * size, rng.uniform(-0.2, 0.6) * horizon
        fill = tuple(int(c * 255) for c in random_color(rng))
        frame = tuple(int(c * 255) for c in random_color(rng))
        lw = int(rng.integers(1, 4))
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=fill, outline=frame, width=lw)
        if rng.random() < 0.5:  # window cross bars
            draw.line([x0 + w / 2, y0, x0 + w / 2, y0 + h], fill=frame, width=lw)
            draw.line([x0, y0 + h / 2, x0 + w, y0 + h / 2], fill=frame, width=lw)
    if rng.random() < 0.6:  # skirting board along the horizon
        c = tuple(int(c * 255) for c in random_color(rng))
        draw.line([0, horizon, size, horizon + rng.uniform(-3, 3)], fill=c, width=int(rng.integers(1, 4)))
    return np.asarray(im, dtype=np.float32) / 255.0, horizon


def _outdoor(rng, size):
    horizon = rng.uniform(0.2, 0.7) * size
    y = np.arange(size, dtype=np.float32)[:, None] * np.ones((1, size), np.float32)
    sky_top = np.array(
        colorsys.hsv_to_rgb(rng.uniform(0.52, 0.66), rng.uniform(0.2, 0.7), rng.uniform(0.6, 1.0))
    )
    sky = _lerp(sky_top.astype(np.float32), np.array([0.9, 0.9, 0.92], np.float32), y / max(horizon, 1))
    if rng.random() < 0.5:  # clouds
        c = np.clip(fractal_noise(rng, size, 3, 2) * 1.6 - 0.6, 0, 1)
        sky = _lerp(sky, np.ones(3, np.float32), c * 0.8)
    ground_kind = rng.choice(["grass", "pavement", "sand", "dirt"])
    ground_color = {
        "grass": np.array(
            colorsys.hsv_to_rgb(rng.uniform(0.2, 0.35), rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.6))
        ),
        "pavement": random_color(rng, "metal"),
        "sand": np.array(
            colorsys.hsv_to_rgb(rng.uniform(0.08, 0.14), rng.uniform(0.2, 0.5), rng.uniform(0.6, 0.9))
        ),
        "dirt": np.array(
            colorsys.hsv_to_rgb(rng.uniform(0.05, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.5))
        ),
    }[ground_kind].astype(np.float32)
    ground = _textured(rng, size, ground_color, rng.uniform(0.2, 0.6))
    img = np.where(y[..., None] < horizon, sky, ground)
    if rng.random() < 0.6:  # trees / bushes: dark blobs across the horizon
        blob = fractal_noise(rng, size, 3, 4)
        band = np.exp(-(((y - horizon) / (0.15 * size)) ** 2))
        tree = (blob * band) > rng.uniform(0.3, 0.5)
        tc = np.array(colorsys.hsv_to_rgb(rng.uniform(0.2, 0.4), 0.6, rng.uniform(0.1, 0.4)), np.float32)
        img = np.where(tree[..., None], _textured(rng, size, tc, 0.5), img)
    return img, horizon


def _clutter(rng, size):
    img = _textured(rng, size, random_color(rng), rng.uniform(0, 0.3))
    im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(rng.integers(3, 15)):
        c = tuple(int(v * 255) for v in random_color(rng))
        kind = rng.random()
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        x1, y1 = x0 + rng.uniform(0.05, 0.6) * size, y0 + rng.uniform(0.05, 0.6) * size
        if kind < 0.4:
            draw.rectangle([x0, y0, x1, y1], fill=c)
        elif kind < 0.65:
            draw.ellipse([x0, y0, x1, y1], fill=c)
        else:  # thin straight lines: the distractor that looks most like chair legs
            xa, ya, xb, yb = rng.uniform(-0.1, 1.1, 4) * size
            draw.line([xa, ya, xb, yb], fill=c, width=int(rng.integers(1, 4)))
    return np.asarray(im, dtype=np.float32) / 255.0, None


def _noise_texture(rng, size):
    n = fractal_noise(rng, size, int(rng.integers(2, 5)), int(rng.integers(2, 10)))
    if rng.random() < 0.4:  # marble veins
        n = np.abs(np.sin(n * rng.uniform(6, 20)))
    c0, c1 = random_color(rng), random_color(rng)
    return _lerp(c0, c1, n), None


def _photo(rng, size, photos):
    ph = photos[int(rng.integers(len(photos)))]
    h, w = ph.shape[:2]
    side = int(rng.uniform(0.25, 1.0) * min(h, w))
    side = max(side, min(size, h, w))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(ph[y0 : y0 + side, x0 : x0 + side]).resize((size, size), Image.BILINEAR)
    img = np.asarray(crop, dtype=np.float32) / 255.0
    if rng.random() < 0.5:
        img = img[:, ::-1]
    # colour jitter so a handful of photos yields many backgrounds
    img = img * rng.uniform(0.7, 1.3, 3).astype(np.float32) + rng.uniform(-0.1, 0.1)
    return img, None


def render_background(
    rng: np.random.Generator, size: int, photos: tuple[np.ndarray, ...] = (), photo_prob: float = 0.0
) -> tuple[np.ndarray, float | None]:
    """An HxWx3 float image in [0, 1] and, for scenes with a floor, the horizon row."""
    if photos and rng.random() < photo_prob:
        img, horizon = _photo(rng, size, photos)
    else:
        r = rng.random()
        if r < 0.4:
            img, horizon = _room(rng, size)
        elif r < 0.6:
            img, horizon = _outdoor(rng, size)
        elif r < 0.85:
            img, horizon = _clutter(rng, size)
        else:
            img, horizon = _noise_texture(rng, size)
    return np.clip(img, 0.0, 1.0).astype(np.float32), horizon
