"""The foundation: Detectron2 imports and runs here, the compiled-ops stand-in, set-up safety."""

from __future__ import annotations

import importlib
import io
import tarfile
import venv
from pathlib import Path

import pytest
import torch

import semseg_heads
from bootstrap import install_detectron2
from semseg_heads.compat import compiled_ops_available, detectron2_info, report_line

REPO = Path(__file__).resolve().parents[1]

needs_standin = pytest.mark.skipif(
    compiled_ops_available(), reason="detectron2 has its compiled ops: the stand-in is not installed"
)


def test_detectron2_public_api_imports() -> None:
    from detectron2.engine import DefaultTrainer
    from detectron2.evaluation import COCOEvaluator, SemSegEvaluator
    from detectron2.modeling import build_model
    from detectron2.utils.visualizer import Visualizer

    assert all(callable(x) for x in (DefaultTrainer, COCOEvaluator, SemSegEvaluator, build_model, Visualizer))


def test_mask_rcnn_from_model_zoo_runs_on_cpu() -> None:
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        (out,) = model([{"image": torch.randint(0, 256, (3, 96, 128)).float(), "height": 96, "width": 128}])
    assert out["instances"].image_size == (96, 128)
    assert out["instances"].has("pred_masks")


def test_report_line_names_source_and_ops() -> None:
    info = detectron2_info()
    assert info["version"]
    line = report_line()
    assert line.startswith(f"detectron2 {info['version']}") and "compiled ops:" in line


def test_add_config_is_idempotent() -> None:
    from detectron2.config import get_cfg

    cfg = get_cfg()
    semseg_heads.add_semseg_heads_config(cfg)
    cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE = 0.5
    semseg_heads.add_semseg_heads_config(cfg)  # must not reset what the user set
    assert cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE == 0.5


def test_importing_twice_is_harmless() -> None:
    for name in ("semseg_heads.data", "semseg_heads"):
        importlib.reload(importlib.import_module(name))


@needs_standin
def test_standin_module_is_the_one_we_ship() -> None:
    from detectron2 import _C

    assert Path(_C.__file__).read_bytes() == (REPO / "bootstrap/detectron2_C.py").read_bytes()
    assert "not compiled" in _C.get_compiler_version()
    from detectron2.utils.collect_env import collect_env_info

    assert "detectron2" in collect_env_info()  # what default_setup logs at start-up


@needs_standin
@pytest.mark.parametrize(
    "op, feature",
    [
        ("box_iou_rotated", "rotated boxes"),
        ("roi_align_rotated_forward", "rotated boxes"),
        ("roi_align_rotated_backward", "rotated boxes"),
        ("nms_rotated", "rotated boxes"),
        ("deform_conv_forward", "deformable convolution"),
        ("deform_conv_backward_input", "deformable convolution"),
        ("deform_conv_backward_filter", "deformable convolution"),
        ("modulated_deform_conv_forward", "deformable convolution"),
        ("modulated_deform_conv_backward", "deformable convolution"),
        ("InstanceAnnotation", "fast COCO evaluation"),
        ("COCOevalEvaluateImages", "fast COCO evaluation"),
        ("COCOevalAccumulate", "fast COCO evaluation"),
    ],
)
def test_each_missing_op_raises_a_clear_error(op: str, feature: str) -> None:
    from detectron2 import _C

    with pytest.raises(RuntimeError) as err:
        getattr(_C, op)(torch.zeros(1))
    message = str(err.value)
    assert f"detectron2._C.{op}" in message and feature in message
    assert "from source" in message


@needs_standin
def test_v06_modules_that_need_compiled_ops_import_and_fail_clearly() -> None:
    from detectron2.evaluation import fast_eval_api  # noqa: F401  (imported: no ImportError)
    from detectron2.layers import ROIAlignRotated, nms_rotated
    from detectron2.layers.deform_conv import DeformConv
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[10.0, 10.0, 4.0, 4.0, 0.0]])
    with pytest.raises(RuntimeError, match="box_iou_rotated.*rotated boxes"):
        pairwise_iou_rotated(boxes, boxes)
    with pytest.raises(RuntimeError, match="nms_rotated.*rotated boxes"):
        nms_rotated(boxes, torch.ones(1), 0.5)
    with pytest.raises(RuntimeError, match="roi_align_rotated_forward"):
        ROIAlignRotated((2, 2), 1.0, 0)(torch.zeros(1, 1, 8, 8), torch.tensor([[0.0, 4, 4, 2, 2, 0]]))
    # v0.6 runs deformable convolution's CPU forward through torchvision, not _C.
    out = DeformConv(1, 1, 3, padding=1)(torch.zeros(1, 1, 8, 8), torch.zeros(1, 18, 8, 8))
    assert out.shape == (1, 1, 8, 8)


def _fake_archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = b"print('not detectron2')\n"
        info = tarfile.TarInfo("pb1-detectron2-0.6/detectron2/__init__.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_tampered_archive_stops_setup_and_installs_nothing(tmp_path: Path, capsys) -> None:
    target = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(target)  # a fresh environment without detectron2
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    archive = _fake_archive(cache / "downloads" / install_detectron2.ARCHIVE_NAME)

    code = install_detectron2.main(["--python", str(target / "bin" / "python"), "--cache-dir", str(cache)])

    assert code == 2
    err = capsys.readouterr().err
    assert "does not match the pinned" in err and str(archive) in err and "nothing was installed" in err
    assert not (cache / "build").exists(), "nothing may be unpacked from an unverified archive"
    assert not list(target.glob("lib/python*/site-packages/detectron2*"))
    assert not archive.exists(), "a bad download must be deleted so the next run fetches it again"


def test_verified_archive_is_staged_with_only_our_ops_module_added(tmp_path: Path) -> None:
    archive = _fake_archive(tmp_path / "a.tar.gz")
    staged = install_detectron2.stage_package(archive, tmp_path / "staging")
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert files == ["detectron2/_C.py", "detectron2/__init__.py", "pyproject.toml"]
    assert (staged / "detectron2/__init__.py").read_text() == "print('not detectron2')\n"
