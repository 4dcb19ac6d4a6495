"""Every defect reported at once; loading fails on the first bad file unless told to skip."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from data_helpers import load_tool, save

from semseg_heads.data import DatasetError, register_folder_dataset, validate_chair_segments
from semseg_heads.data.chair_segments import load_chair_segments_semantic
from semseg_heads.data.validate import validate_folder_dataset


def _truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _img(seed, size=(16, 16)):
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


@pytest.fixture
def broken_chair_segments(tmp_path):
    """Chair064/train with one good pair and one pair per kind of defect."""
    d = tmp_path / "Chair064" / "train"
    img, msk = d / "image", d / "mask"
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    for i in (1, 4, 5, 6):
        save(_img(i), str(img / f"{i}.png"))
        save(mask, str(msk / f"{i}.png"))
    save(_img(2), str(img / "2.png"))  # 2: image without mask
    save(mask, str(msk / "3.png"))  # 3: mask without image
    save(np.zeros((20, 16), np.uint8), str(msk / "4.png"))  # 4: size mismatch
    _truncate(str(img / "5.png"))  # 5: truncated image
    (msk / "6.png").write_bytes(b"this is not a png")  # 6: unreadable mask
    save(_img(7), str(img / "chair_seven.png"))  # non-integer id
    save(mask, str(msk / "chair_seven.png"))
    return tmp_path, {
        "image without mask": "2.png",
        "mask without image": "3.png",
        "size mismatch": "4.png",
        "truncated file": "5.png",
        "unreadable file": "6.png",
        "non-integer id": "chair_seven.png",
    }


def test_chair_segments_report_names_every_bad_file(broken_chair_segments):
    root, expected = broken_chair_segments
    report = validate_chair_segments(str(root))
    assert report.checked == 4  # 1, 4, 5, 6: both files present and an integer id
    found = {p.kind: os.path.basename(p.path) for p in report.problems}
    assert found == expected
    text = report.format()
    for kind, name in expected.items():
        assert kind in text and name in text
    assert not report.ok


def test_chair_segments_loading_fails_on_first_bad_file(broken_chair_segments):
    root, _ = broken_chair_segments
    with pytest.raises(DatasetError, match=r"image without mask: .*/2\.png .*\(5 more problem") as info:
        load_chair_segments_semantic(str(root), 64, "train")
    assert len(info.value.problems) == 6


def test_chair_segments_skip_option_logs_each_skip_and_count(broken_chair_segments, caplog):
    root, expected = broken_chair_segments
    with caplog.at_level(logging.WARNING):
        records = load_chair_segments_semantic(str(root), 64, "train", skip_bad_files=True)
    assert [r["image_id"] for r in records] == [1]
    assert "skipped 6 bad file(s)" in caplog.text
    for name in expected.values():
        assert name in caplog.text


def test_validate_tool_exit_status_and_report(broken_chair_segments, capsys):
    root, expected = broken_chair_segments
    tool = load_tool("validate_dataset")
    assert tool.main(["--chair-segments", str(root)]) == 1
    out = capsys.readouterr().out
    assert "6 problem(s)" in out
    for name in expected.values():
        assert name in out
    good = root / "good" / "Chair064" / "val"
    save(_img(0), str(good / "image" / "1.png"))
    save(np.zeros((16, 16), np.uint8), str(good / "mask" / "1.png"))
    assert tool.main(["--chair-segments", str(root / "good")]) == 0
    assert "OK (1 image/mask pairs checked)" in capsys.readouterr().out


def test_folder_report_includes_values_that_map_to_no_class(tmp_path):
    img, msk = tmp_path / "images", tmp_path / "masks"
    good = np.array([[0, 1], [2, 255]], np.uint8).repeat(8, 0).repeat(8, 1)
    bad = good.copy()
    bad[0, 0] = 7
    save(_img(0), str(img / "a.jpg"))
    save(good, str(msk / "a.png"))
    save(_img(1), str(img / "b.jpg"))
    save(bad, str(msk / "b.png"))  # 7 is no class of 3
    save(_img(2), str(img / "c.jpg"))  # no mask
    save(_img(3, (8, 8)), str(img / "d.jpg"))
    save(good, str(msk / "d.png"))  # size mismatch
    options = dict(classes=["bg", "chair", "table"])
    report = validate_folder_dataset(str(img), str(msk), **options)
    assert {p.kind: os.path.basename(p.path) for p in report.problems} == {
        "mask values that map to no class": "b.png",
        "image without mask": "c.jpg",
        "size mismatch": "d.png",
    }
    assert "values 7 are not classes 0..2 or ignore 255" in report.format()
    with pytest.raises(DatasetError, match=r"mask values that map to no class: .*b\.png"):
        register_folder_dataset("validation_bad_values", str(img), str(msk), **options)


def test_empty_chair_segments_split_is_a_problem(tmp_path, capsys):
    (tmp_path / "Chair064" / "val" / "image").mkdir(parents=True)
    (tmp_path / "Chair064" / "val" / "mask").mkdir()
    tool = load_tool("validate_dataset")
    assert tool.main(["--chair-segments", str(tmp_path)]) == 1
    assert "1 empty folder" in capsys.readouterr().out
