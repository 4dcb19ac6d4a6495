"""Masks and images as people store them (issue 17's table, one test or more per row): each
is read right or refused with a message naming the file, what was found and a CLI option that
exists on the CLI that printed it. Every test writes its own small folder."""

from __future__ import annotations

import re

import numpy as np
import pytest
from data_helpers import load_tool, save
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.engine import default_argument_parser
from PIL import Image

from semseg_heads.data import DatasetError, register_folder_dataset, validate_folder_dataset
from semseg_heads.data.cli import add_dataset_arguments, register_datasets_from_args
from semseg_heads.data.labelmaps import read_image_as_shown


def _truths(n=4, h=24, w=32):
    """Boxes of different places and sizes: one object per image."""
    out = []
    for i in range(n):
        m = np.zeros((h, w), bool)
        m[3 + i : 14 + i, 4 + 2 * i : 15 + 3 * i] = True
        out.append(m)
    return out


def _folder(tmp_path, truths, write_mask, image_ext=".png", write_image=None):
    """images/<i><image_ext> and masks/<i>.* (``write_mask(truth, path_without_ext, i)``)."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "masks").mkdir(exist_ok=True)
    for i, t in enumerate(truths):
        path = str(tmp_path / "images" / f"{i}{image_ext}")
        if write_image is None:
            save(rng.integers(0, 255, (*t.shape, 3), dtype=np.uint8), path)
        else:
            write_image(t, path, i)
        write_mask(t, str(tmp_path / "masks" / str(i)), i)
    return str(tmp_path / "images"), str(tmp_path / "masks")


def _labels(name):
    return [np.asarray(Image.open(r["sem_seg_file_name"])) for r in DatasetCatalog.get(name)]


def _train_net_options():
    """The option strings of train_net (demo shares the --dataset group)."""
    return set(add_dataset_arguments(default_argument_parser())._option_string_actions)


def _options_in(text):
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text))


def _assert_options_exist(message, options):
    named = _options_in(message)
    assert named, f"no CLI option named in: {message}"
    assert named <= options, f"{named - options} do not exist: {message}"


# -- RGBA masks: the object in the alpha channel ----------------------------------------------


def test_rgba_cutout_masks_are_read_from_alpha(tmp_path):
    truths = _truths()

    def write(t, stem, i):
        rgba = np.full((*t.shape, 4), 255, np.uint8)  # all white; alpha marks the object
        rgba[..., 3] = t * 255
        Image.fromarray(rgba, "RGBA").save(stem + ".png")

    images, masks = _folder(tmp_path, truths, write)
    assert validate_folder_dataset(images, masks).ok
    register_folder_dataset("stored_rgba", images, masks)
    for label, t in zip(_labels("stored_rgba"), truths):
        np.testing.assert_array_equal(label, t.astype(np.uint8))
    assert "stored_rgba_instance" in DatasetCatalog.list()


def test_gray_alpha_cutout_masks_are_read_from_alpha(tmp_path):
    truths = _truths(2)

    def write(t, stem, i):
        la = np.stack([np.full(t.shape, 200, np.uint8), (t * 255).astype(np.uint8)], -1)
        Image.fromarray(la, "LA").save(stem + ".png")

    images, masks = _folder(tmp_path, truths, write)
    register_folder_dataset("stored_la", images, masks)
    for label, t in zip(_labels("stored_la"), truths):
        np.testing.assert_array_equal(label, t.astype(np.uint8))


def test_rgba_masks_with_varying_colour_and_alpha_are_refused_by_name(tmp_path):
    truths = _truths(2)

    def write(t, stem, i):
        rgba = np.zeros((*t.shape, 4), np.uint8)
        rgba[..., 0] = np.arange(t.shape[1], dtype=np.uint8)[None] * 7
        rgba[..., 3] = 255 - t * 128
        Image.fromarray(rgba, "RGBA").save(stem + ".png")

    images, masks = _folder(tmp_path, truths, write)
    report = validate_folder_dataset(images, masks)
    assert [p.path for p in report.problems] == [f"{masks}/0.png", f"{masks}/1.png"]
    assert "colours and transparency both vary" in str(report.problems[0])


def test_all_foreground_dataset_is_an_error_not_ok(tmp_path, capsys):
    """What the RGBA masks gave before: every pixel foreground. Refused by validation and by
    registration, saying what the masks were read as."""
    truths = _truths(3)
    images, masks = _folder(
        tmp_path, truths, lambda t, stem, i: save(np.full(t.shape, 255, np.uint8), stem + ".png")
    )
    tool = load_tool("validate_dataset")
    assert tool.main(["--images", images, "--masks", masks]) == 1
    out = capsys.readouterr().out
    assert "every mask one class" in out and "only class 1 ('foreground')" in out
    with pytest.raises(DatasetError, match="every label map holds only"):
        register_folder_dataset("stored_all_fg", images, masks)
    with pytest.raises(DatasetError, match=r"only class 1 \('foreground'\).*--mask-threshold"):
        register_folder_dataset("stored_all_fg", images, masks, mask_format="binary")


# -- 0/1 masks through JPEG --------------------------------------------------------------------


def _jpeg_01(t, stem, i):
    Image.fromarray(t.astype(np.uint8)).save(stem + ".jpg", quality=90)


def test_0_1_masks_saved_as_jpeg_are_binary(tmp_path):
    truths = _truths()
    images, masks = _folder(tmp_path, truths, _jpeg_01)
    seen = {int(v) for i in range(len(truths)) for v in np.unique(np.asarray(Image.open(f"{masks}/{i}.jpg")))}
    assert seen - {0, 1}, f"JPEG kept the values exact ({seen}): the test shows nothing"
    names = register_folder_dataset("stored_jpeg01", images, masks)
    assert names == ["stored_jpeg01", "stored_jpeg01_instance"]
    assert MetadataCatalog.get("stored_jpeg01").stuff_classes == ["background", "foreground"]
    for i, (label, t) in enumerate(zip(_labels("stored_jpeg01"), truths)):
        np.testing.assert_array_equal(label, np.asarray(Image.open(f"{masks}/{i}.jpg")) >= 1)
        assert (label == t).mean() > 0.9  # JPEG itself moved some edges
    assert "0/1 masks through lossy compression" in MetadataCatalog.get("stored_jpeg01").registration


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_binary_format_thresholds_0_1_masks_relative_to_their_values(tmp_path, ext):
    """--mask-format binary on 0/1 masks: foreground stays foreground (not 0.4 x 255)."""
    truths = _truths()

    def write(t, stem, i):
        Image.fromarray(t.astype(np.uint8)).save(stem + ext, **({"quality": 90} if ext == ".jpg" else {}))

    images, masks = _folder(tmp_path, truths, write)
    register_folder_dataset("stored_bin01", images, masks, mask_format="binary")
    for label, t in zip(_labels("stored_bin01"), truths):
        assert (label == t).mean() > 0.9 and label.sum() > 0


# -- a folder mixing 0/255 and 0/1 masks -------------------------------------------------------


def _mixed(t, stem, i):
    save((t * (255 if i % 2 else 1)).astype(np.uint8), stem + ".png")


def test_mixed_0_255_and_0_1_masks_are_refused_naming_one_of_each(tmp_path):
    truths = _truths()
    images, masks = _folder(tmp_path, truths, _mixed)
    with pytest.raises(DatasetError) as err:
        register_folder_dataset("stored_mixed", images, masks)
    message = str(err.value)
    assert f"{masks}/0.png" in message and f"{masks}/1.png" in message
    assert "would become 'ignore'" in message
    assert "--skip-bad-files" not in message  # leaving files out would not mend the folder
    _assert_options_exist(message, _train_net_options())
    report = validate_folder_dataset(images, masks)
    assert [p.kind for p in report.problems] == ["masks mixing encodings"]


def test_mixed_masks_read_per_file_with_binary_format(tmp_path):
    truths = _truths()
    images, masks = _folder(tmp_path, truths, _mixed)
    register_folder_dataset("stored_mixed_bin", images, masks, mask_format="binary")
    for label, t in zip(_labels("stored_mixed_bin"), truths):
        np.testing.assert_array_equal(label, t.astype(np.uint8))


def test_mixed_masks_with_255_stated_as_ignore(tmp_path):
    truths = _truths()
    images, masks = _folder(tmp_path, truths, _mixed)
    register_folder_dataset("stored_mixed_ign", images, masks, ignore_label=255, instances=False)
    labels = _labels("stored_mixed_ign")
    assert 255 in labels[1] and 1 in labels[0]  # what the user said: 255 is ignore


# -- 16-bit grayscale images -------------------------------------------------------------------


def _image16(t, path, i):
    v = (t * 40000 + 5000 + 1000 * i).astype(np.uint16)
    Image.fromarray(v).save(path)  # PIL mode I;16


@pytest.mark.parametrize("image_ext", [".png", ".tif"])
def test_16_bit_images_are_scaled_to_8_bit_for_detectron2(tmp_path, image_ext):
    truths = _truths(2)
    images, masks = _folder(
        tmp_path, truths, lambda t, s, i: save(t.astype(np.uint8) * 255, s + ".png"), image_ext, _image16
    )
    raw = Image.open(f"{images}/0{image_ext}")
    assert raw.mode.startswith("I")
    assert (utils.read_image(f"{images}/0{image_ext}", "RGB") == 255).all()  # what Detectron2 sees alone
    report = validate_folder_dataset(images, masks)
    assert report.ok and "2 16-bit image(s) scaled to 8 bits" in report.format()
    register_folder_dataset("stored_16bit", images, masks)
    assert "2 16-bit image(s) scaled to 8 bits" in MetadataCatalog.get("stored_16bit").registration
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.RANDOM_FLIP = (24,), 32, "none"
    mapper = DatasetMapper(cfg, is_train=True)  # Detectron2's own loading path
    for i, (record, t) in enumerate(zip(DatasetCatalog.get("stored_16bit"), truths)):
        expected = np.round((t * 40000 + 5000 + 1000 * i) * 255 / 65535).astype(np.uint8)
        image = mapper(record)["image"].numpy()
        assert image.shape == (3, 24, 32)
        for channel in image:
            np.testing.assert_array_equal(channel, expected)


def test_float_images_are_refused_by_name(tmp_path):
    truths = _truths(2)

    def write_image(t, path, i):
        Image.fromarray(t.astype(np.float32) * 0.5, "F").save(path)

    images, masks = _folder(
        tmp_path, truths, lambda t, s, i: save(t.astype(np.uint8) * 255, s + ".png"), ".tif", write_image
    )
    report = validate_folder_dataset(images, masks)
    assert [p.path for p in report.problems] == [f"{images}/0.tif", f"{images}/1.tif"]
    assert "floating-point image (PIL mode F" in str(report.problems[0])


# -- EXIF-rotated photos -----------------------------------------------------------------------


def _turned_jpeg(t, path, i):
    """A JPEG stored turned (W x H swapped) with EXIF Orientation 6: shown as ``t``'s shape."""
    rng = np.random.default_rng(i)
    stored = rng.integers(0, 255, (t.shape[1], t.shape[0], 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif, quality=95)


def test_exif_rotated_photos_with_masks_as_shown_validate_and_load(tmp_path):
    truths = _truths(2, h=24, w=32)
    images, masks = _folder(
        tmp_path, truths, lambda t, s, i: save(t.astype(np.uint8) * 255, s + ".png"), ".jpg", _turned_jpeg
    )
    assert validate_folder_dataset(images, masks).ok
    register_folder_dataset("stored_exif", images, masks)
    for record in DatasetCatalog.get("stored_exif"):
        image = utils.read_image(record["file_name"], "RGB")  # EXIF applied, as training reads it
        utils.check_image_size(record, image)  # what raised SizeMismatchError in training
        assert image.shape[:2] == (24, 32)


def test_exif_rotated_photos_with_masks_as_stored_say_why(tmp_path):
    truths = _truths(2, h=24, w=32)

    def write_stored(t, stem, i):  # the mask in the stored orientation: 24 wide, 32 high
        save(np.ascontiguousarray(t.T).astype(np.uint8) * 255, stem + ".png")

    images, masks = _folder(tmp_path, truths, write_stored, ".jpg", _turned_jpeg)
    report = validate_folder_dataset(images, masks)
    assert [p.kind for p in report.problems] == ["size mismatch"] * 2
    assert "EXIF orientation (6)" in str(report.problems[0])


# -- <stem>_mask.png beside <stem>.png in one folder -------------------------------------------


def test_masks_with_a_suffix_in_the_image_folder(tmp_path):
    truths = _truths(3)
    rng = np.random.default_rng(0)
    for i, t in enumerate(truths):
        save(rng.integers(0, 255, (*t.shape, 3), dtype=np.uint8), str(tmp_path / "both" / f"photo{i}.png"))
        save(t.astype(np.uint8) * 255, str(tmp_path / "both" / f"photo{i}_mask.png"))
    folder = str(tmp_path / "both")
    assert validate_folder_dataset(folder, folder, mask_suffix="_mask").ok
    register_folder_dataset("stored_suffix", folder, folder, mask_suffix="_mask")
    records = DatasetCatalog.get("stored_suffix")
    assert [r["file_name"].rsplit("/", 1)[1] for r in records] == ["photo0.png", "photo1.png", "photo2.png"]
    for label, t in zip(_labels("stored_suffix"), truths):
        np.testing.assert_array_equal(label, t.astype(np.uint8))


# -- error messages name options that exist; registration is printed ---------------------------


def _dataset_args(argv):
    return add_dataset_arguments(default_argument_parser()).parse_args(argv)


def test_bad_file_error_names_an_existing_option_and_the_option_skips(tmp_path, capsys):
    truths = _truths(3)
    images, masks = _folder(tmp_path, truths, lambda t, s, i: save(t.astype(np.uint8) * 255, s + ".png"))
    open(f"{masks}/1.png", "wb").close()  # zero bytes
    args = _dataset_args(["--dataset", f"stored_skip={images}:{masks}"])
    with pytest.raises(DatasetError) as err:
        register_datasets_from_args(args)
    assert "skip_bad_files=True" not in str(err.value).replace("(Python: skip_bad_files=True)", "")
    _assert_options_exist(str(err.value), _train_net_options())
    assert "--skip-bad-files" in str(err.value)
    args = _dataset_args(["--dataset", f"stored_skip={images}:{masks}", "--skip-bad-files"])
    assert register_datasets_from_args(args) == ["stored_skip"]
    printed = capsys.readouterr().err
    assert "Dataset 'stored_skip': 2 image/mask pair(s)" in printed
    assert "1 bad file(s) left out (--skip-bad-files)" in printed and f"{masks}/1.png" in printed
    assert len(DatasetCatalog.get("stored_skip")) == 2


def test_every_problem_message_names_options_of_validate_dataset(tmp_path, capsys):
    """Each suggestion in validate_dataset's report is one of its own options."""
    truths = _truths(4)

    def write(t, stem, i):
        v = (t * 255).astype(np.uint8)
        if i == 1:
            v = np.stack([v, v // 2, v], -1)  # colour mask without palette
        if i == 2:
            v[:2, :2] = 128  # a stray value: implausible class ids
        save(v, stem + ".png")

    images, masks = _folder(tmp_path, truths, write)
    tool = load_tool("validate_dataset")
    assert tool.main(["--images", images, "--masks", masks]) == 1
    out = capsys.readouterr().out
    options = set(tool.build_parser()._option_string_actions)
    assert _options_in(out), out
    for line in out.splitlines():
        for option in _options_in(line):
            assert option in options, f"{option} is not an option of validate_dataset: {line}"


def test_validate_dataset_prints_what_it_decided(tmp_path, capsys):
    truths = _truths(2)
    images, masks = _folder(tmp_path, truths, lambda t, s, i: save(t.astype(np.uint8) * 255, s + ".png"))
    tool = load_tool("validate_dataset")
    assert tool.main(["--images", images, "--masks", masks]) == 0
    out = capsys.readouterr().out
    assert "masks read as binary 0/255 (values found: 0, 255): 0 -> class 0, 255 -> class 1" in out
    assert "classes: 0 'background', 1 'foreground'" in out and "OK (2 image/mask pairs checked)" in out


def test_images_given_to_a_model_are_read_as_shown(tmp_path):
    """demo.py and the like read single images the way registration reads dataset images: a
    16-bit photo scaled to 8 bits, not clipped to white; an 8-bit one exactly as Detectron2."""
    t = np.zeros((12, 16), bool)
    t[3:9, 4:12] = True
    _image16(t, str(tmp_path / "deep.png"), 0)
    bgr = read_image_as_shown(str(tmp_path / "deep.png"), "BGR")
    expected = np.round((t * 40000 + 5000) * 255 / 65535).astype(np.uint8)
    assert bgr.shape == (12, 16, 3)
    for channel in np.moveaxis(bgr, -1, 0):
        np.testing.assert_array_equal(channel, expected)
    rgb8 = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb8).save(tmp_path / "plain.png")
    plain = str(tmp_path / "plain.png")
    np.testing.assert_array_equal(read_image_as_shown(plain, "BGR"), utils.read_image(plain, "BGR"))
    Image.fromarray(t.astype(np.float32), "F").save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"float\.tif.*floating-point image"):
        read_image_as_shown(str(tmp_path / "float.tif"))
