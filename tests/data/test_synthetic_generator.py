"""The procedural Chair Segments generator: layout, determinism, reuse/resume, backgrounds, tool."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from data_helpers import load_tool, save
from PIL import Image

from chairseg.data.synthetic import build_chair, generate_chair_segments, render_sample


def _digest(folder):
    h = hashlib.sha256()
    for sub in ("image", "mask"):
        for name in sorted(os.listdir(os.path.join(folder, sub))):
            h.update(name.encode())
            h.update(open(os.path.join(folder, sub, name), "rb").read())
    return h.hexdigest()


def _ids(folder):
    return [int(n[:-4]) for n in os.listdir(folder)]


def test_layout_and_contents(tmp_path):
    result = generate_chair_segments(
        str(tmp_path), 32, {"train": 5, "val": 3}, seed=1, progress=False, workers=1
    )
    assert {s: r["status"] for s, r in result.items()} == {"train": "generated", "val": "generated"}
    for split, n in (("train", 5), ("val", 3)):
        d = tmp_path / "Chair032" / split
        names = [f"{i}.png" for i in range(1, n + 1)]
        assert sorted(os.listdir(d / "image")) == sorted(names) == sorted(os.listdir(d / "mask"))
        for name in names:
            image, mask = Image.open(d / "image" / name), Image.open(d / "mask" / name)
            assert image.mode == "RGB" and image.size == (32, 32)
            assert mask.mode == "L" and mask.size == (32, 32)
            m = np.asarray(mask)
            assert 0.01 < (m > 102).mean() < 0.95  # one chair, neither missing nor filling the image


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = generate_chair_segments(str(tmp_path / "a"), 32, {"train": 40}, seed=3, workers=1, progress=False)
    generate_chair_segments(str(tmp_path / "b"), 32, {"train": 40}, seed=3, workers=2, progress=False)
    generate_chair_segments(str(tmp_path / "c"), 32, {"train": 40}, seed=4, workers=1, progress=False)
    da, db, dc = (_digest(tmp_path / x / "Chair032" / "train") for x in "abc")
    assert da == db != dc
    assert a["train"]["written"] == 40


def test_reuse_resume_and_refusal(tmp_path):
    root = str(tmp_path)
    generate_chair_segments(root, 32, {"val": 6}, seed=0, workers=1, progress=False)
    d = tmp_path / "Chair032" / "val"
    digest = _digest(d)
    assert generate_chair_segments(root, 32, {"val": 6}, seed=0, progress=False)["val"]["status"] == "reused"
    os.remove(d / "image" / "2.png")
    os.remove(d / "image" / "5.png")
    again = generate_chair_segments(root, 32, {"val": 6}, seed=0, workers=1, progress=False)["val"]
    assert again["status"] == "resumed" and again["written"] == 2
    assert _digest(d) == digest
    # Another count with the same settings grows or trims the split, keeping every other file.
    grown = generate_chair_segments(root, 32, {"val": 8}, seed=0, workers=1, progress=False)["val"]
    assert grown["written"] == 2 and sorted(_ids(d / "image")) == list(range(1, 9))
    assert generate_chair_segments(root, 32, {"val": 6}, seed=0, progress=False)["val"]["status"] == "reused"
    assert _digest(d) == digest
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_chair_segments(root, 32, {"val": 6}, seed=1, progress=False)
    generate_chair_segments(root, 32, {"val": 4}, seed=1, workers=1, progress=False, overwrite=True)
    assert len(os.listdir(d / "image")) == 4


def test_chairs_have_the_hard_parts():
    """Across seeds: thin legs, backrests with slats/holes, armrests and several styles."""
    beams = [len(build_chair(np.random.default_rng(i))) for i in range(60)]
    assert min(beams) >= 5 and max(beams) >= 15
    holes = 0
    for i in range(30):
        _, mask = render_sample(np.random.default_rng(i), 64)
        fg = mask > 102
        # background pixels enclosed by the chair's bounding box: legs apart, slats, holes
        ys, xs = np.nonzero(fg)
        box = fg[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        holes += (~box).mean() > 0.3
    assert holes >= 20  # chairs are mostly "air" inside their box: not blobs


def test_photo_backgrounds_from_a_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        save(rng.integers(0, 255, (80, 120, 3), dtype=np.uint8), str(tmp_path / "bg" / f"{i}.jpg"))
    generate_chair_segments(
        str(tmp_path / "out"),
        32,
        {"train": 4},
        backgrounds="photos",
        background_dir=str(tmp_path / "bg"),
        workers=1,
        progress=False,
    )
    assert len(os.listdir(tmp_path / "out" / "Chair032" / "train" / "image")) == 4


def test_skimage_photos_are_optional(tmp_path):
    try:
        import skimage  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="scikit-image"):
            generate_chair_segments(str(tmp_path), 32, {"train": 2}, backgrounds="mixed", progress=False)
        return
    r = generate_chair_segments(
        str(tmp_path), 32, {"train": 4}, backgrounds="mixed", workers=1, progress=False
    )
    assert r["train"]["written"] == 4


def test_tool_prints_the_speed_figure(tmp_path, capsys):
    tool = load_tool("generate_chair_segments")
    argv = ["--root", str(tmp_path), "--resolution", "32", "--train", "8", "--val", "4", "--no-progress"]
    assert tool.main(argv + ["--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "generated 12 images at 32x32 in" in out and "images/s" in out
    assert tool.main(argv + ["--seed", "9"]) == 1  # other settings on existing data: refused
    assert "overwrite" in capsys.readouterr().err
