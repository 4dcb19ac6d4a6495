"""semseg_heads.config: config files load through Detectron2's own loader (bases, version
upgrade), plus `model_zoo:` bases and errors that name the file."""

from __future__ import annotations

import os

import pytest
from detectron2.config import CfgNode, get_cfg

from semseg_heads.config import get_semseg_heads_cfg, merge_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASK_RCNN = os.path.join(REPO, "configs", "ChairSegments", "mask_rcnn_R_50_FPN.yaml")


def test_old_version_config_is_upgraded_as_detectron2_does(tmp_path):
    """A v1 config (MODEL.WEIGHT, RPN.HEAD_NAME era) through a base: Detectron2's upgrade runs
    (the old loader merged _BASE_ chains itself and skipped it)."""
    (tmp_path / "old_base.yaml").write_text('VERSION: 1\nMODEL:\n  WEIGHT: "w.pth"\n')
    old = tmp_path / "old.yaml"
    old.write_text('_BASE_: "old_base.yaml"\nVERSION: 1\nMODEL:\n  RPN:\n    HEAD_NAME: "MyRPNHead"\n')
    cfg = get_semseg_heads_cfg(str(old))
    assert cfg.VERSION == 2 and cfg.MODEL.RPN.HEAD_NAME == "MyRPNHead" and cfg.MODEL.WEIGHTS == "w.pth"
    assert "WIDTH_SCALE" in cfg.MODEL.SEMSEG_HEADS  # the project's keys survive the upgrade


def test_model_zoo_base_into_a_plain_detectron2_config():
    cfg = get_cfg()
    cfg.MODEL.SEMSEG_HEADS = CfgNode({"WIDTH_SCALE": 1.0})  # keys the file does not set are fine
    cfg.MODEL.SEMSEG_HEADS.set_new_allowed(True)
    merge_config_file(cfg, MASK_RCNN)
    assert cfg.MODEL.SEMSEG_HEADS.is_new_allowed() and not cfg.MODEL.is_new_allowed()
    assert type(cfg) is CfgNode and type(cfg.MODEL) is CfgNode  # the caller's class throughout
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml' does not exist"):
        get_semseg_heads_cfg(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml' is not valid YAML"):
        get_semseg_heads_cfg(str(bad))
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="bad.yaml' holds a list, not a mapping"):
        get_semseg_heads_cfg(str(bad))
    bad.write_text("MODEL:\n  UNET:\n    DEPHT: 3\n")
    with pytest.raises(KeyError, match=r"bad.yaml.*Non-existent config key: MODEL.UNET.DEPHT.*spelling"):
        get_semseg_heads_cfg(str(bad))
    frozen = get_semseg_heads_cfg()
    frozen.freeze()
    with pytest.raises(RuntimeError, match="frozen"):
        merge_config_file(frozen, MASK_RCNN)
