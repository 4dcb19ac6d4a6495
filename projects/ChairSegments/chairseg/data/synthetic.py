"""Procedural Chair Segments: 3D chairs rendered in perspective and composited onto backgrounds.

Chair Segments (Pinto-Alva et al. 2020, Sec. 3) composites about 900 chair cut-outs onto indoor
and outdoor photographs; chairs are hard to segment because of thin legs, slatted or holed
backrests, armrests and self-occlusion. Here every chair is built from beams (legs, posts,
rails, slats, spindles, stretchers, arms, seat and back panels, an office chair's column and star
base) with random proportions, style, material, colour and texture, seen from a random azimuth,
elevation and perspective strength, lit, rendered 4x supersampled and composited with its
anti-aliased coverage onto a background from :mod:`chairseg.data.backgrounds`.

The mask file is that coverage (0..255, like a cut-out's alpha); the dataset loader calls a
pixel chair when it exceeds 0.4 of the range, as the reference loader does. Output follows
the official layout ``<root>/Chair064/<split>/{image,mask}/<id>.png`` with integer ids from 1.
Each image is drawn from its own ``(seed, split, id)`` random stream, so the result does not
depend on the number of workers, and an interrupted run resumes exactly.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import time
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from chairseg.data.backgrounds import (
    folder_photo_paths,
    load_photos,
    random_color,
    render_background,
    skimage_photo_paths,
    value_noise,
)
from semseg_heads.utils.io import read_json_or_none, resolution_folder, write_json_atomic, write_png_atomic

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MANIFEST = "generator.json"
BACKGROUND_CHOICES = ("procedural", "photos", "mixed")

FRAME, CUSHION = 1, 2  # material ids in the rendered material map

# ---------------------------------------------------------------------------------------------
# Geometry: every part is a beam, a hexahedron from p0 to p1 with a rectangular cross-section
# (w, t) that may taper, so legs, slats, rails, panels and cushions share one description.
# ---------------------------------------------------------------------------------------------

# Corner order per end: (-u,-v), (+u,-v), (+u,+v), (-u,+v); end 0 = corners 0..3, end 1 = 4..7.
_FACES = np.array(
    [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]], dtype=np.int64
)
_SIGNS = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float32)


class ChairModel:
    """A list of beams (ends, cross-sections, orientation hint, material), turned into 8 corner
    points each by :meth:`arrays` in one vectorised step."""

    def __init__(self) -> None:
        self._beams: list[tuple] = []

    def beam(self, p0, p1, size0, size1=None, up=(0.0, 1.0, 0.0), material: int = FRAME) -> None:
        size1 = size0 if size1 is None else size1
        self._beams.append((*p0, *p1, *size0, *size1, *up, material))

    def __len__(self) -> int:
        return len(self._beams)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(corners (B, 8, 3), materials (B,))``."""
        a = np.asarray(self._beams, dtype=np.float64)
        p0, p1, s0, s1, up = a[:, 0:3], a[:, 3:6], a[:, 6:8], a[:, 8:10], a[:, 10:13]
        d = p1 - p0
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        # Beams along their orientation hint (e.g. vertical legs) take x (or z) as the hint.
        along = np.abs((up * d).sum(1)) > 0.95
        alt = np.where(np.abs(d[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]])
        up = np.where(along[:, None], alt, up)
        u = np.cross(up, d)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        v = np.cross(d, u)
        ends = []
        for p, sz in ((p0, s0), (p1, s1)):
            off_u = _SIGNS[None, :, :1] * sz[:, None, :1] * u[:, None, :]
            off_v = _SIGNS[None, :, 1:] * sz[:, None, 1:] * v[:, None, :]
            ends.append(p[:, None, :] + 0.5 * (off_u + off_v))
        return np.concatenate(ends, axis=1).astype(np.float32), a[:, 13].astype(np.int64)


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _legs(m: ChairModel, W, D, H, lw, inset, splay, taper):
    """Four legs under the seat corners, optionally splayed and tapered."""
    xs, zs = W / 2 - inset - lw / 2, D / 2 - inset - lw / 2
    feet = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            top = (sx * xs, H, sz * zs)
            foot = (top[0] + sx * splay, 0.0, top[2] + sz * splay)
            m.beam(foot, top, (lw * taper, lw * taper), (lw, lw))
            feet.append((foot, top))
    return feet


def _stretchers(m, rng, feet, lw):
    """Rungs between legs: side pairs, an H, or a ring (bar stools)."""
    y_frac = _u(rng, 0.12, 0.45)
    kind = rng.choice(["sides", "h", "ring", "front"])
    pts = {}
    for (foot, top), key in zip(feet, ["lb", "lf", "rb", "rf"]):
        f, t = np.asarray(foot), np.asarray(top)
        pts[key] = f + (t - f) * y_frac
    w = lw * _u(rng, 0.5, 0.9)
    links = {
        "sides": [("lb", "lf"), ("rb", "rf")],
        "front": [("lf", "rf"), ("lb", "rb")],
        "ring": [("lb", "lf"), ("rb", "rf"), ("lf", "rf"), ("lb", "rb")],
        "h": [("lb", "lf"), ("rb", "rf")],
    }[kind]
    for a, b in links:
        m.beam(pts[a], pts[b], (w, w))
    if kind == "h":
        m.beam((pts["lb"] + pts["lf"]) / 2, (pts["rb"] + pts["rf"]) / 2, (w, w))


def _backrest(m, rng, W, D, H, t_seat, lw, height, tilt, style, material_panel):
    """Posts rising from the back of the seat, tilted back, filled in one of several styles."""
    z0 = -D / 2 + lw / 2
    y0 = H + t_seat / 2
    back = np.array([0.0, np.cos(tilt), -np.sin(tilt)], np.float32)  # direction up the back

    def at(x, s):  # point at width x, fraction s of the back height
        return np.array([x, y0, z0], np.float32) + back * (s * height)

    xw = W / 2 - lw / 2
    post_w = lw * _u(rng, 0.8, 1.1)
    if style != "panel":
        for sx in (-1, 1):
            m.beam(at(sx * xw, 0.0) - back * (t_seat / 2), at(sx * xw, 1.0), (post_w, post_w))
    rail_h = _u(rng, 0.06, 0.25) * height
    thick = lw * _u(rng, 0.5, 0.9)
    if style == "panel":  # solid panel, office/modern
        m.beam(
            at(0, _u(rng, 0.0, 0.25)),
            at(0, 1.0),
            (W * _u(rng, 0.85, 1.0), max(thick, 0.02)),
            material=material_panel,
        )
    elif style == "slats_v":
        m.beam(at(-xw, 1.0 - rail_h / height / 2), at(xw, 1.0 - rail_h / height / 2), (rail_h, thick))
        bottom = _u(rng, 0.05, 0.35)
        if rng.random() < 0.6:
            m.beam(at(-xw, bottom), at(xw, bottom), (rail_h * 0.5, thick))
        n = int(rng.integers(1, 6))
        slat_w = _u(rng, 0.3, 1.0) * (2 * xw) / (2 * n + 1)
        for i in range(n):
            x = -xw + (2 * xw) * (i + 1) / (n + 1)
            m.beam(at(x, bottom), at(x, 1.0 - rail_h / height), (slat_w, thick * 0.8))
    elif style == "slats_h":
        n = int(rng.integers(2, 6))
        top, bottom = 1.0 - rail_h / height / 2, _u(rng, 0.1, 0.4)
        for i in range(n):
            s = top - i * (top - bottom) / max(n - 1, 1)
            m.beam(at(-xw, s), at(xw, s), (rail_h * _u(rng, 0.4, 1.0), thick))
    elif style == "spindles":
        m.beam(at(-xw, 1.0 - rail_h / height / 2), at(xw, 1.0 - rail_h / height / 2), (rail_h, thick))
        n = int(rng.integers(3, 9))
        sw = lw * _u(rng, 0.3, 0.6)
        for i in range(n):
            x = -xw + (2 * xw) * (i + 1) / (n + 1)
            m.beam(at(x, 0.02), at(x, 1.0 - rail_h / height), (sw, sw))
    else:  # "frame": a panel with a hole in it, sometimes split by a central splat
        m.beam(at(-xw, 1.0 - rail_h / height / 2), at(xw, 1.0 - rail_h / height / 2), (rail_h, thick))
        b = _u(rng, 0.1, 0.4)
        m.beam(at(-xw, b), at(xw, b), (rail_h * _u(rng, 0.5, 1.2), thick))
        if rng.random() < 0.5:
            m.beam(
                at(0, b),
                at(0, 1.0 - rail_h / height),
                (W * _u(rng, 0.1, 0.35), thick),
                material=material_panel,
            )


def _arms(m, rng, W, D, H, lw, back_tilt, thick=False):
    y = H + _u(rng, 0.17, 0.28)
    aw = lw * (_u(rng, 2.5, 4.0) if thick else _u(rng, 0.9, 1.6))
    for sx in (-1, 1):
        x = sx * (W / 2 + (aw / 2 if thick else -lw / 2))
        back = (x, y, -D / 2 + (y - H) * np.tan(back_tilt))
        front = (x, y, D / 2 - lw / 2 + _u(rng, -0.05, 0.03))
        m.beam(back, front, (aw, lw * _u(rng, 0.8, 1.2)))
        if thick:  # upholstered arm block from below the seat up to the arm
            zc = (back[2] + front[2]) / 2
            depth = front[2] - back[2]
            m.beam((x, H - 0.1, zc), (x, y, zc), (aw, depth), up=(0, 0, 1), material=CUSHION)
        else:
            lean = _u(rng, -0.06, 0.02)
            m.beam((x, H, front[2] - 0.04 + lean), (x, y, front[2] - 0.04), (lw * 0.8, lw * 0.8))


def build_chair(rng: np.random.Generator) -> ChairModel:
    """One random chair, seat centred over the origin, standing on y = 0, facing +z."""
    m = ChairModel()
    style = rng.choice(["side", "arm", "office", "lounge", "bar"], p=[0.33, 0.17, 0.2, 0.14, 0.16])
    cushion = CUSHION if rng.random() < 0.5 else FRAME
    if style in ("side", "arm", "bar"):
        W, D = _u(rng, 0.36, 0.55), _u(rng, 0.36, 0.52)
        H = _u(rng, 0.4, 0.5) if style != "bar" else _u(rng, 0.62, 0.82)
        t_seat = _u(rng, 0.02, 0.07)
        lw = _u(rng, 0.015, 0.05)
        feet = _legs(m, W, D, H - t_seat / 2, lw, _u(rng, 0.0, 0.04), _u(rng, 0.0, 0.06), _u(rng, 0.5, 1.0))
        if rng.random() < (0.9 if style == "bar" else 0.45):
            _stretchers(m, rng, feet, lw)
        m.beam((0, H, D / 2), (0, H, -D / 2), (W, t_seat), material=cushion)
        back_style = rng.choice(
            ["slats_v", "slats_h", "spindles", "frame", "panel"], p=[0.3, 0.2, 0.15, 0.2, 0.15]
        )
        height = _u(rng, 0.25, 0.4) if style == "bar" else _u(rng, 0.3, 0.6)
        tilt = np.deg2rad(_u(rng, 0, 16))
        _backrest(m, rng, W, D, H, t_seat, lw, height, tilt, back_style, cushion)
        if style == "arm":
            _arms(m, rng, W, D, H, lw, tilt)
    elif style == "office":
        W, D, H = _u(rng, 0.42, 0.55), _u(rng, 0.4, 0.5), _u(rng, 0.42, 0.55)
        t_seat = _u(rng, 0.05, 0.1)
        m.beam((0, H, D / 2), (0, H, -D / 2), (W, t_seat), material=CUSHION)
        col_w = _u(rng, 0.03, 0.06)
        hub_y = _u(rng, 0.06, 0.12)
        m.beam((0, hub_y, 0), (0, H - t_seat / 2, 0), (col_w, col_w))
        n_spokes = int(rng.choice([4, 5, 5, 5]))
        spoke_len, spoke_w = _u(rng, 0.22, 0.32), _u(rng, 0.025, 0.05)
        phase = _u(rng, 0, 2 * np.pi)
        for i in range(n_spokes):
            a = phase + 2 * np.pi * i / n_spokes
            tip = (spoke_len * np.cos(a), _u(rng, 0.04, 0.07), spoke_len * np.sin(a))
            m.beam((0, hub_y, 0), tip, (spoke_w, spoke_w * 0.8), (spoke_w * 0.7, spoke_w * 0.6))
            m.beam((tip[0], 0.0, tip[2]), (tip[0], tip[1], tip[2]), (0.045, 0.045))  # caster
        height, tilt = _u(rng, 0.35, 0.7), np.deg2rad(_u(rng, 2, 18))
        gap = _u(rng, 0.02, 0.12)
        back = np.array([0.0, np.cos(tilt), -np.sin(tilt)], np.float32)
        base = np.array([0.0, H + gap, -D / 2 - 0.02], np.float32)
        m.beam(base, base + back * height, (W * _u(rng, 0.8, 1.05), _u(rng, 0.04, 0.08)), material=CUSHION)
        m.beam(
            (0, H - t_seat / 2, -D / 2 + 0.05),
            base + back * (0.2 * height) - np.array([0, 0, 0.03]),
            (0.05, 0.02),
        )
        if rng.random() < 0.5:
            _arms(m, rng, W, D, H, 0.03, tilt)
    else:  # lounge: wide, low, thick cushions and arm blocks, short legs
        W, D, H = _u(rng, 0.55, 0.8), _u(rng, 0.5, 0.7), _u(rng, 0.32, 0.45)
        t_seat = _u(rng, 0.1, 0.18)
        lw = _u(rng, 0.03, 0.06)
        _legs(m, W, D, H - t_seat / 2, lw, _u(rng, 0.0, 0.05), _u(rng, 0.0, 0.03), _u(rng, 0.6, 1.0))
        m.beam((0, H, D / 2), (0, H, -D / 2), (W, t_seat), material=CUSHION)
        height, tilt = _u(rng, 0.3, 0.55), np.deg2rad(_u(rng, 5, 20))
        back = np.array([0.0, np.cos(tilt), -np.sin(tilt)], np.float32)
        base = np.array([0.0, H, -D / 2 + 0.06], np.float32)
        m.beam(base, base + back * height, (W, _u(rng, 0.08, 0.15)), material=CUSHION)
        if rng.random() < 0.75:
            _arms(m, rng, W, D, H, lw, tilt, thick=True)
    return m


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _camera_view(rng: np.random.Generator, pts: np.ndarray):
    """Camera basis and position looking at the chair from a random azimuth and elevation."""
    r = rng.random()
    if r < 0.65:  # product-photo views: front and three-quarter
        az = rng.uniform(-65, 65)
    elif r < 0.9:
        az = rng.choice([-1, 1]) * rng.uniform(65, 115)
    else:
        az = rng.uniform(115, 245)
    el = np.deg2rad(rng.uniform(-5, 40))
    az = np.deg2rad(az)
    center = (pts.min(0) + pts.max(0)) / 2
    dist = rng.uniform(1.6, 6.0)  # in chair-sizes: small = strong perspective
    d = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], np.float32)
    cam = center + d * dist
    f = -d
    right = np.cross(f, np.array([0, 1, 0], np.float32))
    right /= np.linalg.norm(right)
    up = np.cross(right, f)
    return cam, right, up, f


def render_chair(rng: np.random.Generator, size: int, supersample: int = 4):
    """Render a random chair.

    Returns ``(premultiplied RGB float HxWx3, coverage HxW in [0,1], cushion fraction HxW)``.
    """
    model = build_chair(rng)
    corners, mats = model.arrays()  # (B, 8, 3), (B,)
    B = len(corners)
    pts = corners.reshape(-1, 3)
    cam, right, up, fwd = _camera_view(rng, pts)
    rel = pts - cam
    z = rel @ fwd
    xy = np.stack([rel @ right, rel @ up], 1) / z[:, None]
    xy[:, 1] *= -1
    roll = np.deg2rad(rng.normal(0, 5))
    c, s = np.cos(roll), np.sin(roll)
    xy = xy @ np.array([[c, -s], [s, c]], np.float32).T

    # Place the chair: its larger side spans `frac` of the image; sometimes cut by the border.
    S = size * supersample
    lo, hi = xy.min(0), xy.max(0)
    frac = rng.uniform(0.45, 0.95)
    scale = frac * S / max(float((hi - lo).max()), 1e-6)
    ext = (hi - lo) * scale
    slack = np.maximum(S - ext, 0)
    overhang = 0.15 * ext * (rng.random() < 0.15)
    offset = rng.uniform(-overhang, slack + overhang) - lo * scale
    xy = xy * scale + offset

    # Faces: outward normals, back-face culling, painter's order (far first).
    fidx = (np.arange(B)[:, None, None] * 8 + _FACES[None]).reshape(-1, 4)  # (B*6, 4)
    P = pts[fidx]  # (F, 4, 3)
    n = np.cross(P[:, 1] - P[:, 0], P[:, 3] - P[:, 0])
    fc = P.mean(1)
    bc = np.repeat(corners.mean(1), 6, axis=0)
    n *= np.sign(np.einsum("ij,ij->i", n, fc - bc))[:, None]
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    visible = np.einsum("ij,ij->i", n, cam - fc) > 0
    depth = np.linalg.norm(fc - cam, axis=1)
    order = [i for i in np.argsort(-depth) if visible[i]]

    # Materials and lighting.
    frame_kind = rng.choice(["wood", "dark", "light", "metal", "vivid"], p=[0.35, 0.2, 0.15, 0.15, 0.15])
    colors_arr = np.zeros((3, 3), np.float32)
    colors_arr[FRAME], colors_arr[CUSHION] = random_color(rng, frame_kind), random_color(rng)
    light = np.array([rng.uniform(-1, 1), rng.uniform(0.3, 1.5), rng.uniform(-0.2, 1.2)], np.float32)
    light /= np.linalg.norm(light)
    ambient, diffuse = rng.uniform(0.3, 0.6), rng.uniform(0.4, 0.9)
    shade = ambient + diffuse * np.clip(n @ light, 0, None)
    beam_tint = rng.uniform(0.9, 1.1, (B, 1)).astype(np.float32)

    face_rgb = colors_arr[mats][:, None, :] * shade.reshape(B, 6, 1) * beam_tint[:, :, None]
    face_rgb = (np.clip(face_rgb, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(-1, 3).tolist()
    rgb = Image.new("RGB", (S, S))
    alpha = Image.new("L", (S, S))
    cushion = Image.new("L", (S, S))
    draw_rgb, draw_alpha, draw_cushion = ImageDraw.Draw(rgb), ImageDraw.Draw(alpha), ImageDraw.Draw(cushion)
    polys = xy[fidx].reshape(len(fidx), 8).tolist()
    for i in order:
        poly = polys[i]
        draw_rgb.polygon(poly, fill=tuple(face_rgb[i]))
        draw_alpha.polygon(poly, fill=255)
        draw_cushion.polygon(poly, fill=255 if mats[i // 6] == CUSHION else 0)

    # Box-filter down to the output size (C code in PIL): premultiplied colour and coverage.
    k = supersample
    rgb_a = np.asarray(rgb.reduce(k), dtype=np.float32) / 255.0
    coverage = np.asarray(alpha.reduce(k), dtype=np.float32) / 255.0
    cushion_a = np.asarray(cushion.reduce(k), dtype=np.float32) / 255.0
    return rgb_a, coverage, cushion_a


def _texture(rng, size, kind):
    if kind == "wood":  # grain: stretched noise turned into rings
        n = value_noise(rng, size, int(rng.integers(3, 8)))
        a = rng.uniform(0, np.pi)
        y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
        t = (x * np.cos(a) + y * np.sin(a)) * rng.uniform(10, 30) + 4 * n
        return np.sin(t) * 0.5
    if kind == "fabric":
        return (rng.random((size, size), dtype=np.float32) - 0.5) * 0.6 + (value_noise(rng, size, 8) - 0.5)
    if kind == "check":
        y, x = np.mgrid[0:size, 0:size]
        p = int(rng.integers(2, 6))
        return (((x // p) + (y // p)) % 2 - 0.5).astype(np.float32)
    return np.zeros((size, size), np.float32)


def render_sample(
    rng: np.random.Generator,
    size: int = 64,
    photos: tuple[np.ndarray, ...] = (),
    photo_prob: float = 0.0,
    supersample: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """One composite: ``(RGB uint8 HxWx3, mask uint8 HxW = chair coverage * 255)``."""
    bg, horizon = render_background(rng, size, photos, photo_prob)
    chair, alpha, cushion = render_chair(rng, size, supersample)

    # Texture the chair: one pattern for the frame, one for cushions.
    tex_frame = _texture(rng, size, rng.choice(["wood", "none", "fabric"], p=[0.5, 0.35, 0.15]))
    tex_cush = _texture(rng, size, rng.choice(["fabric", "check", "none"], p=[0.6, 0.15, 0.25]))
    amp = rng.uniform(0.1, 0.5)
    frac_c = np.divide(cushion, alpha, out=np.zeros_like(alpha), where=alpha > 0)
    tex = (1 - frac_c) * tex_frame + frac_c * tex_cush
    chair = chair * (1 + amp * tex)[..., None]

    if rng.random() < 0.1:  # camouflage: the chair takes the background's colour
        mean_bg = (bg * alpha[..., None]).sum((0, 1)) / max(float(alpha.sum()), 1.0)
        chair_mean = (chair.sum((0, 1)) / max(float(alpha.sum()), 1.0)) + 1e-3
        chair = chair * (mean_bg / chair_mean * rng.uniform(0.8, 1.2))

    if horizon is not None and rng.random() < 0.6:  # contact shadow on the floor
        ys, xs = np.nonzero(alpha > 0.5)
        if len(ys):
            cy, cx = ys.max(), xs.mean()
            w = max(float(xs.max() - xs.min()), 2.0)
            y, x = np.mgrid[0:size, 0:size].astype(np.float32)
            g = np.exp(-(((x - cx) / (0.6 * w)) ** 2 + ((y - cy) / (0.12 * w + 1)) ** 2))
            bg = bg * (1 - rng.uniform(0.2, 0.6) * g)[..., None]

    img = bg * (1 - alpha[..., None]) + chair
    # Camera effects: exposure, sensor noise, slight blur.
    img = img * rng.uniform(0.8, 1.2) + rng.uniform(-0.05, 0.05)
    img = img + rng.normal(0, rng.uniform(0, 0.03), img.shape).astype(np.float32)
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.7)))
    mask = (np.clip(alpha, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.asarray(out), mask


# ---------------------------------------------------------------------------------------------
# Writing a dataset
# ---------------------------------------------------------------------------------------------


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode("utf-8"))


_WORKER_STATE: dict = {}


def _init_worker(state: dict) -> None:
    _WORKER_STATE.clear()
    _WORKER_STATE.update(state)
    if state["photo_paths"]:
        _WORKER_STATE["photos"] = load_photos(tuple(state["photo_paths"]))
    else:
        _WORKER_STATE["photos"] = ()


def _write_ids(ids: Sequence[int]) -> int:
    st = _WORKER_STATE
    for i in ids:
        rng = np.random.default_rng([st["seed"], _split_code(st["split"]), i])
        image, mask = render_sample(rng, st["resolution"], st["photos"], st["photo_prob"], st["supersample"])
        # mask first: an image on disk always has its mask
        write_png_atomic(mask, os.path.join(st["dir"], "mask", f"{i}.png"))
        write_png_atomic(image, os.path.join(st["dir"], "image", f"{i}.png"))
    return len(ids)


def _without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def _ids(folder: str) -> set[int]:
    if not os.path.isdir(folder):
        return set()
    return {int(n[:-4]) for n in os.listdir(folder) if n.endswith(".png") and n[:-4].isdigit()}


def _default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def generate_chair_segments(
    root: str,
    resolution: int = 64,
    splits: Mapping[str, int] | None = None,
    seed: int = 0,
    *,
    backgrounds: str = "procedural",
    photo_prob: float = 0.5,
    background_dir: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    supersample: int = 4,
) -> dict:
    """Write procedural Chair Segments to ``<root>/Chair{resolution:03d}/<split>/{image,mask}/<id>.png``.

    Args:
        splits: images per split, default ``{"train": 2000, "val": 500}``.
        seed: same seed, resolution and options -> byte-identical files, whatever ``workers``.
        backgrounds: "procedural" (no dependency), "photos" or "mixed" (``photo_prob`` of the
            images on a photo): photos from ``background_dir`` or scikit-image's sample photos.
        workers: processes (default: the usable cores, at most 8).
        overwrite: replace a split made with other settings (otherwise that is an error). A split
            made with the same settings is reused when complete, resumed when interrupted, and
            grown or trimmed to a new count (the images it keeps are unchanged).
        progress: a tqdm bar on a terminal (none in logs that are not a terminal).

    Returns ``{split: {"status", "count", "seconds", "images_per_s", "dir"}}``.
    """
    from tqdm import tqdm

    splits = dict(splits) if splits is not None else {"train": 2000, "val": 500}
    if backgrounds not in BACKGROUND_CHOICES:
        raise ValueError(f"backgrounds must be one of {BACKGROUND_CHOICES}, got {backgrounds!r}")
    photo_paths: list[str] = []
    if backgrounds != "procedural":
        photo_paths = folder_photo_paths(background_dir) if background_dir else skimage_photo_paths()
        photo_prob = 1.0 if backgrounds == "photos" else float(photo_prob)
    elif background_dir:
        raise ValueError("background_dir needs backgrounds='photos' or 'mixed'")
    resolution = int(resolution)
    if resolution < 8:
        raise ValueError(f"resolution must be an integer >= 8, got {resolution}")
    workers = _default_workers() if workers is None else max(1, int(workers))
    res_dir = os.path.join(os.path.abspath(os.path.expanduser(str(root))), resolution_folder(resolution))
    results = {}
    for split, count in splits.items():
        count = int(count)
        d = os.path.join(res_dir, split)
        manifest_path = os.path.join(d, MANIFEST)
        settings = {
            "generator": "chairseg.data.synthetic",
            "version": GENERATOR_VERSION,
            "seed": int(seed),
            "resolution": resolution,
            "split": split,
            "count": count,
            "backgrounds": backgrounds,
            "photo_prob": photo_prob if photo_paths else 0.0,
            "photos": [os.path.basename(p) for p in photo_paths],
            "supersample": supersample,
        }
        old = read_json_or_none(manifest_path)
        # Image i depends on (seed, split, i) and the settings only, so a different count with
        # the same settings grows or trims the split instead of starting over.
        same = old is not None and _without(old, "complete", "count") == _without(settings, "count")
        has_files = any(
            os.path.isdir(os.path.join(d, sub)) and os.listdir(os.path.join(d, sub))
            for sub in ("image", "mask")
        )
        if has_files and not same:
            if not overwrite:
                raise FileExistsError(
                    f"'{d}' already holds data made with other settings "
                    f"({_without(old, 'complete') if old else 'not by this generator'}); "
                    "pass overwrite=True (--overwrite) to replace it, or choose another root"
                )
            for sub in ("image", "mask", "label"):
                shutil.rmtree(os.path.join(d, sub), ignore_errors=True)
        for sub in ("image", "mask"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        done = _ids(os.path.join(d, "image"))
        extra = sorted((done | _ids(os.path.join(d, "mask"))) - set(range(1, count + 1)))
        if extra:
            logger.info("Chair%03d/%s: trimming %d images beyond id %d", resolution, split, len(extra), count)
            for i in extra:  # image first: a mask on disk always outlives its image
                for sub in ("image", "mask", "label"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(d, sub, f"{i}.png"))
        todo = [i for i in range(1, count + 1) if i not in done]
        if not todo and same and old.get("complete"):
            if old.get("count") != count:
                write_json_atomic({**settings, "complete": True}, manifest_path, indent=1)
            logger.info(
                "Chair%03d/%s: %d images already generated with these settings", resolution, split, count
            )
            results[split] = {
                "status": "reused",
                "count": count,
                "written": 0,
                "seconds": 0.0,
                "images_per_s": None,
                "dir": d,
            }
            continue
        write_json_atomic({**settings, "complete": False}, manifest_path, indent=1)
        state = {
            "seed": int(seed),
            "split": split,
            "resolution": resolution,
            "supersample": supersample,
            "dir": d,
            "photo_paths": photo_paths,
            "photo_prob": photo_prob if photo_paths else 0.0,
        }
        chunk = 32
        chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
        t0 = time.perf_counter()
        bar = tqdm(
            total=len(todo),
            desc=f"{resolution_folder(resolution)}/{split}",
            unit="img",
            disable=None if progress else True,
        )
        if workers > 1 and len(chunks) > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
            with ctx.Pool(workers, initializer=_init_worker, initargs=(state,)) as pool:
                for n in pool.imap_unordered(_write_ids, chunks):
                    bar.update(n)
        else:
            _init_worker(state)
            for c in chunks:
                bar.update(_write_ids(c))
        bar.close()
        seconds = time.perf_counter() - t0
        write_json_atomic({**settings, "complete": True}, manifest_path, indent=1)
        rate = len(todo) / seconds if seconds > 0 else None
        status = "generated" if len(todo) == count else "resumed"
        logger.info(
            "Chair%03d/%s: %s %d images in %.1f s (%.0f images/s, %d worker(s))",
            resolution,
            split,
            status,
            len(todo),
            seconds,
            rate or 0,
            workers,
        )
        results[split] = {
            "status": status,
            "count": count,
            "written": len(todo),
            "seconds": seconds,
            "images_per_s": rate,
            "workers": workers,
            "dir": d,
        }
    return results
