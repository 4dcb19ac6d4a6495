"""A user's own folder in one call: binary 0/255 detection, palettes, class ids, instances."""

from __future__ import annotations

import logging

import numpy as np
import pycocotools.mask as mask_util
import pytest
from data_helpers import save
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from semseg_heads.data import register_folder_dataset


def _labels(name):
    return [np.asarray(Image.open(r["sem_seg_file_name"])) for r in DatasetCatalog.get(name)]


def _binary_folder(tmp_path, n=3, ext=".jpg", mask_ext=".png", suffix=""):
    rng = np.random.default_rng(0)
    masks = []
    for i in range(n):
        m = np.zeros((24, 32), np.uint8)
        m[2 + i : 12 + i, 3:9] = 255
        m[15:20, 20 + i : 30] = 255  # a second blob
        save(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), str(tmp_path / "images" / f"img_{i}{ext}"))
        save(m, str(tmp_path / "masks" / f"img_{i}{suffix}{mask_ext}"))
        masks.append(m)
    return str(tmp_path / "images"), str(tmp_path / "masks"), masks


def test_binary_0_255_masks_map_to_class_1_with_a_log_line(tmp_path, caplog):
    images, masks_dir, masks = _binary_folder(tmp_path)
    with caplog.at_level(logging.WARNING):
        names = register_folder_dataset("folder_binary", images, masks_dir)
    assert names == ["folder_binary", "folder_binary_instance"]
    assert "binary 0/255" in caplog.text and "255 -> class 1" in caplog.text
    for label, m in zip(_labels("folder_binary"), masks):
        np.testing.assert_array_equal(label, (m == 255).astype(np.uint8))
    meta = MetadataCatalog.get("folder_binary")
    assert meta.stuff_classes == ["background", "foreground"] and meta.evaluator_type == "sem_seg"
    inst = DatasetCatalog.get("folder_binary_instance")
    assert MetadataCatalog.get("folder_binary_instance").thing_classes == ["foreground"]
    for r, m in zip(inst, masks):
        (ann,) = r["annotations"]  # one instance per image covering the whole mask
        np.testing.assert_array_equal(mask_util.decode(ann["segmentation"]), m == 255)


def test_stated_ignore_label_keeps_255_as_ignore(tmp_path, caplog):
    images, masks_dir, masks = _binary_folder(tmp_path)
    for i, m in enumerate(masks):  # class 1 beside the ignored 255 (one class alone is an error)
        m[20:, :4] = 1
        save(m, f"{masks_dir}/img_{i}.png")
    with caplog.at_level(logging.WARNING):
        register_folder_dataset("folder_ignore", images, masks_dir, ignore_label=255, instances=False)
    assert "binary 0/255" not in caplog.text
    for label, m in zip(_labels("folder_ignore"), masks):
        np.testing.assert_array_equal(label, m)  # 255 stays "ignore"
    assert MetadataCatalog.get("folder_ignore").ignore_label == 255


def test_components_mode_and_mask_suffix(tmp_path):
    images, masks_dir, masks = _binary_folder(tmp_path, ext=".png", mask_ext=".bmp", suffix="_mask")
    register_folder_dataset(
        "folder_components", images, masks_dir, mask_suffix="_mask", instances="components"
    )
    for r in DatasetCatalog.get("folder_components_instance"):
        assert len(r["annotations"]) == 2


def test_palette_colour_masks(tmp_path):
    palette = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]
    label = np.array([[0, 1], [2, 1]], np.uint8).repeat(8, 0).repeat(8, 1)
    rgb = np.array(palette, np.uint8)[label]
    save(np.zeros((16, 16, 3), np.uint8), str(tmp_path / "img" / "x.tif"))
    save(rgb, str(tmp_path / "ann" / "x.png"))
    names = register_folder_dataset(
        "folder_palette",
        str(tmp_path / "img"),
        str(tmp_path / "ann"),
        classes=["bg", "red", "blue"],
        palette=palette,
    )
    assert names == ["folder_palette"]  # 3 classes: no instance variant by default
    np.testing.assert_array_equal(_labels("folder_palette")[0], label)
    rgb[0, 0] = (9, 9, 9)
    save(rgb, str(tmp_path / "ann" / "x.png"))
    with pytest.raises(ValueError, match=r"x\.png.*\(9, 9, 9\).*not in the palette"):
        DatasetCatalog.get("folder_palette")


def test_palette_mode_images_use_indices_not_colours(tmp_path):
    """VOC-style 'P' masks: the index is the class (Detectron2's mapper would read luminance)."""
    label = np.array([[0, 1], [2, 255]], np.uint8).repeat(8, 0).repeat(8, 1)
    p = Image.fromarray(label, mode="P")
    pal = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192]
    p.putpalette(pal)
    (tmp_path / "ann").mkdir()
    p.save(tmp_path / "ann" / "1.png")
    save(np.zeros((16, 16, 3), np.uint8), str(tmp_path / "img" / "1.jpg"))
    register_folder_dataset(
        "folder_voc", str(tmp_path / "img"), str(tmp_path / "ann"), classes=["bg", "a", "b"]
    )
    got = _labels("folder_voc")[0]
    np.testing.assert_array_equal(got, label)
    assert Image.open(DatasetCatalog.get("folder_voc")[0]["sem_seg_file_name"]).mode == "L"


def test_binary_threshold_for_lossy_masks(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))
    save(np.zeros((16, 16, 3), np.uint8), str(tmp_path / "img" / "1.png"))
    save(ramp, str(tmp_path / "msk" / "1.png"))
    with pytest.raises(ValueError, match="values .* are not classes 0..1"):
        register_folder_dataset(
            "folder_lossy", str(tmp_path / "img"), str(tmp_path / "msk"), classes=["bg", "fg"]
        )
    register_folder_dataset(
        "folder_lossy", str(tmp_path / "img"), str(tmp_path / "msk"), mask_format="binary"
    )
    np.testing.assert_array_equal(_labels("folder_lossy")[0], (ramp > 102).astype(np.uint8))


def test_skip_bad_files_logs_them(tmp_path, caplog):
    images, masks_dir, _ = _binary_folder(tmp_path)
    (tmp_path / "masks" / "img_1.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"unreadable file: .*img_1\.png"):
        register_folder_dataset("folder_skip", images, masks_dir)
    with caplog.at_level(logging.WARNING):
        register_folder_dataset("folder_skip", images, masks_dir, skip_bad_files=True)
    assert len(DatasetCatalog.get("folder_skip")) == 2
    assert "skipped 1 bad file(s) of 3" in caplog.text and "img_1.png" in caplog.text
