"""semseg_heads.utils.io: atomic writes leave either the old file or the new one, never a part."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from semseg_heads.utils import io


def test_resolution_folder() -> None:
    assert [io.resolution_folder(r) for r in (32, 64, 128)] == ["Chair032", "Chair064", "Chair128"]


def test_json_round_trip_and_missing_or_broken(tmp_path) -> None:
    path = tmp_path / "a.json"
    assert io.read_json_or_none(path) is None
    io.write_json_atomic({"x": [1, 2]}, path, indent=1)
    assert io.read_json_or_none(path) == {"x": [1, 2]}
    path.write_text("{not json")
    assert io.read_json_or_none(path) is None


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "a.json"
    io.write_json_atomic({"old": True}, path)
    with pytest.raises(TypeError):
        io.write_json_atomic({"bad": object()}, path)
    assert io.read_json_or_none(path) == {"old": True}
    assert os.listdir(tmp_path) == ["a.json"]


def test_png_gray_and_rgb(tmp_path) -> None:
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    rgb = np.stack([gray, gray[::-1], gray.T], axis=-1)
    io.write_png_atomic(gray, tmp_path / "g.png")
    io.write_png_atomic(rgb, tmp_path / "c.png")
    assert Image.open(tmp_path / "g.png").mode == "L"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), gray)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), rgb)
    assert sorted(os.listdir(tmp_path)) == ["c.png", "g.png"]


def test_refuse_existing_names_the_file_and_the_way_to_allow_it(tmp_path) -> None:
    target = tmp_path / "out.json"
    io.refuse_existing(target, overwrite=False)  # nothing there: nothing to refuse
    target.write_text("earlier")
    with pytest.raises(FileExistsError, match=r"out\.json' exists; pass --overwrite"):
        io.refuse_existing(target, overwrite=False)
    with pytest.raises(FileExistsError, match="pass force=True"):
        io.refuse_existing(target, overwrite=False, how="pass force=True")
    io.refuse_existing(target, overwrite=True)
    assert target.read_text() == "earlier"
