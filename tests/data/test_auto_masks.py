"""Masks as people store them: ``mask_format="auto"`` reads them right or stops naming the file.

One test per row of issue 9's table: lossy JPEG binary masks, 16-bit binary and class-id masks,
0/255 masks with a stray value, 0/1 masks with a stray value, a corrected mask with an older
modification time, truncated and zero-byte files, RGB masks without a palette, an empty folder.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from data_helpers import load_tool, save
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from semseg_heads.data import DatasetError, register_folder_dataset
from semseg_heads.data.validate import validate_folder_dataset


def _chairs(n=3, h=24, w=32):
    masks = []
    for i in range(n):
        m = np.zeros((h, w), bool)
        m[3 + i : 15 + i, 4:14] = True
        m[16:21, 18 + i : 30] = True
        masks.append(m)
    return masks


def _folder(tmp_path, masks, write_mask):
    rng = np.random.default_rng(0)
    for i, m in enumerate(masks):
        save(rng.integers(0, 255, (*m.shape, 3), dtype=np.uint8), str(tmp_path / "images" / f"{i}.png"))
        os.makedirs(tmp_path / "masks", exist_ok=True)
        write_mask(m, str(tmp_path / "masks" / f"{i}"), i)
    return str(tmp_path / "images"), str(tmp_path / "masks")


def _chair_iou(name, truths):
    """Chair IoU (percent) of a perfect prediction (the true masks) against the label maps."""
    inter = union = 0
    records = DatasetCatalog.get(name)
    for r, truth in zip(records, truths):
        label = np.asarray(Image.open(r["sem_seg_file_name"]))
        inter += int(((label == 1) & truth).sum())
        union += int(((label == 1) | truth).sum())
    return 100.0 * inter / union


def test_jpeg_binary_masks_are_thresholded(tmp_path):
    truths = _chairs()

    def write(m, stem, i):
        Image.fromarray(m.astype(np.uint8) * 255).save(stem + ".jpg", quality=75)

    images, masks = _folder(tmp_path, truths, write)
    values = np.unique(np.concatenate([np.asarray(Image.open(f"{masks}/{i}.jpg")).ravel() for i in range(3)]))
    assert len(values) > 10  # the lossy values this test is about
    names = register_folder_dataset("auto_jpeg", images, masks)
    assert names == ["auto_jpeg", "auto_jpeg_instance"]
    assert MetadataCatalog.get("auto_jpeg").stuff_classes == ["background", "foreground"]
    assert _chair_iou("auto_jpeg", truths) == 100.0
    assert validate_folder_dataset(images, masks).ok


def test_16_bit_binary_masks(tmp_path):
    truths = _chairs()

    def write(m, stem, i):
        Image.fromarray(m.astype(np.uint16) * 65535).save(stem + ".png")

    images, masks = _folder(tmp_path, truths, write)
    assert Image.open(f"{masks}/0.png").mode.startswith("I")
    register_folder_dataset("auto_16bit", images, masks)
    assert len(MetadataCatalog.get("auto_16bit").stuff_classes) == 2
    assert _chair_iou("auto_16bit", truths) == 100.0


def test_16_bit_class_ids_keep_their_value_and_300_needs_a_map(tmp_path):
    truths = _chairs()

    def write(m, stem, i):
        ids = m.astype(np.uint16)
        ids[0, :4] = 2  # a third class
        if i == 1:
            ids[-1, -3:] = 300
        Image.fromarray(ids).save(stem + ".png")

    images, masks = _folder(tmp_path, truths, write)
    with pytest.raises(DatasetError, match=r"1\.png .*value\(s\) 300 do not fit .*value_map"):
        register_folder_dataset("auto_16bit_ids", images, masks)
    report = validate_folder_dataset(images, masks)
    assert [os.path.basename(p.path) for p in report.problems] == ["1.png"]
    register_folder_dataset("auto_16bit_ids", images, masks, value_map={300: 3})
    assert len(MetadataCatalog.get("auto_16bit_ids").stuff_classes) == 4
    labels = [np.asarray(Image.open(r["sem_seg_file_name"])) for r in DatasetCatalog.get("auto_16bit_ids")]
    assert labels[1][-1, -1] == 3 and labels[0][0, 0] == 2
    assert _chair_iou("auto_16bit_ids", [t & (lab != 3) for t, lab in zip(truths, labels)]) == 100.0


@pytest.mark.parametrize("stray", [128, 37])
def test_0_255_masks_with_a_stray_block_are_an_error(tmp_path, stray):
    truths = _chairs()

    def write(m, stem, i):
        v = m.astype(np.uint8) * 255
        if i == 2:
            v[0:3, 0:3] = stray
        Image.fromarray(v).save(stem + ".png")

    images, masks = _folder(tmp_path, truths, write)
    with pytest.raises(DatasetError, match=rf"implausible mask values: .*2\.png .*{stray} \(9 px\)") as info:
        register_folder_dataset("auto_stray", images, masks)
    assert "mask_format='binary'" in str(info.value) and "classes=[...]" in str(info.value)
    report = validate_folder_dataset(images, masks)
    assert not report.ok and [os.path.basename(p.path) for p in report.problems] == ["2.png"]
    # The user's way out: threshold them.
    register_folder_dataset("auto_stray", images, masks, mask_format="binary")
    if stray > 0.4 * 255:  # above the threshold: the block becomes foreground
        truths[2][0:3, 0:3] = True
    else:
        truths[2][0:3, 0:3] = False
    assert _chair_iou("auto_stray", truths) == 100.0


def test_0_1_masks_with_a_stray_7_are_an_error(tmp_path):
    truths = _chairs()

    def write(m, stem, i):
        v = m.astype(np.uint8)
        if i == 0:
            v[-1, -2:] = 7
        Image.fromarray(v).save(stem + ".png")

    images, masks = _folder(tmp_path, truths, write)
    with pytest.raises(
        DatasetError, match=r"0\.png .*7 \(2 px\) would make 8 classes \(ids 2\.\.6 never occur\)"
    ):
        register_folder_dataset("auto_stray7", images, masks)
    assert "auto_stray7" not in DatasetCatalog.list()


def test_clean_0_1_and_0_255_masks_still_work(tmp_path):
    truths = _chairs()
    images, masks = _folder(
        tmp_path, truths, lambda m, stem, i: Image.fromarray(m.astype(np.uint8)).save(stem + ".png")
    )
    register_folder_dataset("auto_01", images, masks)
    assert _chair_iou("auto_01", truths) == 100.0


def test_corrected_mask_with_an_older_mtime_is_rebuilt(tmp_path):
    truths = _chairs()
    images, masks = _folder(
        tmp_path, truths, lambda m, stem, i: Image.fromarray(m.astype(np.uint8) * 255).save(stem + ".png")
    )
    register_folder_dataset("auto_cache", images, masks)
    DatasetCatalog.get("auto_cache")
    # The corrected mask, written elsewhere long ago, copied in keeping its old time (cp -p).
    fixed = truths[1].copy()
    fixed[:, :2] = True
    old = tmp_path / "fixed.png"
    Image.fromarray(fixed.astype(np.uint8) * 255).save(old)
    os.utime(old, (1_000_000_000, 1_000_000_000))
    shutil.copy2(old, f"{masks}/1.png")
    assert (
        os.stat(f"{masks}/1.png").st_mtime
        < os.stat(DatasetCatalog.get("auto_cache")[1]["sem_seg_file_name"]).st_mtime
    )
    register_folder_dataset("auto_cache", images, masks)
    truths[1] = fixed
    assert _chair_iou("auto_cache", truths) == 100.0


@pytest.mark.parametrize("damage", ["truncated", "zero-byte"])
def test_truncated_and_zero_byte_masks_are_named(tmp_path, damage):
    truths = _chairs(4)
    images, masks = _folder(
        tmp_path, truths, lambda m, stem, i: Image.fromarray(m.astype(np.uint8) * 255).save(stem + ".png")
    )
    path = f"{masks}/1.png"
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2] if damage == "truncated" else b"")
    data = open(f"{images}/3.png", "rb").read()
    open(f"{images}/3.png", "wb").write(data[: len(data) // 2])  # and a truncated image
    kind = "truncated file" if damage == "truncated" else "zero-byte file"
    with pytest.raises(DatasetError, match=rf"{kind}: .*1\.png.*\(1 more problem") as info:
        register_folder_dataset("auto_damaged", images, masks)
    assert {os.path.basename(p.path) for p in info.value.problems} == {"1.png", "3.png"}
    tool = load_tool("validate_dataset")
    assert tool.main(["--images", images, "--masks", masks]) == 1


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncation_is_caught_even_where_pil_was_relaxed(tmp_path, monkeypatch, fmt):
    """Another library may set PIL's ImageFile.LOAD_TRUNCATED_IMAGES for the whole process (the
    test does so itself here); reading stays strict without setting it back."""
    from PIL import ImageFile

    from semseg_heads.data.labelmaps import read_image_size

    path = tmp_path / f"a.{fmt}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    assert read_image_size(str(path)) == ((64, 64), None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    size, problem = read_image_size(str(path))
    assert size is None and problem.kind == "truncated file" and ImageFile.LOAD_TRUNCATED_IMAGES


def test_rgb_masks_without_palette_are_named(tmp_path, capsys):
    truths = _chairs()

    def write(m, stem, i):
        rgb = np.zeros((*m.shape, 3), np.uint8)
        rgb[m] = (200, 30, 30)
        Image.fromarray(rgb).save(stem + ".png")

    images, masks = _folder(tmp_path, truths, write)
    with pytest.raises(DatasetError, match=r"colour mask without palette: .*0\.png .*\(2 more problem"):
        register_folder_dataset("auto_rgb", images, masks)
    tool = load_tool("validate_dataset")
    assert tool.main(["--images", images, "--masks", masks]) == 1
    out = capsys.readouterr().out
    assert "3 colour mask without palette" in out and "--palette" in out
    # The validator takes train_net.py's mask options (--palette r,g,b:r,g,b).
    assert tool.main(["--images", images, "--masks", masks, "--palette", "0,0,0:200,30,30"]) == 0
    register_folder_dataset("auto_rgb", images, masks, palette=[(0, 0, 0), (200, 30, 30)])
    assert _chair_iou("auto_rgb", truths) == 100.0


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError, match="empty folder"):
        register_folder_dataset("auto_empty", str(tmp_path / "images"), str(tmp_path / "masks"))
    tool = load_tool("validate_dataset")
    assert tool.main(["--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks")]) == 1
    assert "1 empty folder" in capsys.readouterr().out


def test_validate_summary_counts_every_kind(tmp_path, capsys):
    truths = _chairs(4)

    def write(m, stem, i):
        v = m.astype(np.uint8) * 255
        if i == 3:
            v = np.stack([v, v // 2, v], -1)
        Image.fromarray(v).save(stem + ".png")

    images, masks = _folder(tmp_path, truths, write)
    open(f"{masks}/0.png", "wb").close()
    save(np.zeros((8, 8, 3), np.uint8), f"{images}/extra.png")
    tool = load_tool("validate_dataset")
    assert tool.main(["--images", images, "--masks", masks]) == 1
    head = next(line for line in capsys.readouterr().out.splitlines() if "problem(s)" in line)
    assert "3 problem(s)" in head
    for part in ("1 zero-byte file", "1 colour mask without palette", "1 image without mask"):
        assert part in head


def test_stored_decision_is_not_reused_after_a_mask_changes(tmp_path):
    """The "auto" decision is cached with a digest of every mask: a new stray value in a
    replaced file (older mtime) is found, not hidden behind the cached binary decision."""
    truths = _chairs()
    images, masks = _folder(
        tmp_path, truths, lambda m, stem, i: Image.fromarray(m.astype(np.uint8) * 255).save(stem + ".png")
    )
    register_folder_dataset("auto_decision", images, masks)
    label_dir = os.path.dirname(DatasetCatalog.get("auto_decision")[0]["sem_seg_file_name"])
    assert os.path.isfile(os.path.join(label_dir, "_label_decision.json"))
    stray = truths[0].astype(np.uint8) * 255
    stray[0:2, 0:2] = 128
    Image.fromarray(stray).save(f"{masks}/0.png")
    os.utime(f"{masks}/0.png", (1_000_000_000, 1_000_000_000))
    with pytest.raises(DatasetError, match=r"0\.png .*128 \(4 px\)"):
        register_folder_dataset("auto_decision", images, masks)


def test_float_masks_with_fractions_are_not_truncated_to_ids(tmp_path):
    truths = _chairs()

    def write(m, stem, i):
        Image.fromarray(m.astype(np.float32) * 0.8).save(stem + ".tif")

    images, masks = _folder(tmp_path, truths, write)
    with pytest.raises(DatasetError, match=r"0\.tif .*fractional values .*mask_format='binary'"):
        register_folder_dataset("auto_float", images, masks)
    register_folder_dataset("auto_float", images, masks, mask_format="binary")
    assert _chair_iou("auto_float", truths) == 100.0
