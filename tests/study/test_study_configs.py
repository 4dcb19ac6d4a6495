"""The study's and the parity check's recipes are YAML configs: each is its model config plus
the shared settings file of its folder, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chairseg.study.plan import MODEL_CONFIGS, config_path
from semseg_heads.config import get_semseg_heads_cfg

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ChairSegments"


def _flat(cfg) -> dict:
    return _flat_dict(yaml.safe_load(cfg.dump()))


def _settings(path: Path) -> set[str]:
    """The keys a shared settings file (Base-*.yaml) sets."""
    return set(_flat_dict(yaml.safe_load(path.read_text()))) - {"VERSION"}


def _flat_dict(node: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in node.items():
        out.update(_flat_dict(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _changed(config: Path, base: Path) -> dict:
    a, b = _flat(get_semseg_heads_cfg(str(base), [])), _flat(get_semseg_heads_cfg(str(config), []))
    return {k: b[k] for k in b if a.get(k) != b[k]}


def test_the_study_runs_every_scratch_recipe_through_its_study_config() -> None:
    scratch = {p.stem for p in (CONFIGS / "scratch").glob("*.yaml") if not p.stem.startswith("Base-")}
    assert {Path(c).stem for c in MODEL_CONFIGS} == scratch
    assert all(config_path(c).parent == CONFIGS / "study" and config_path(c).is_file() for c in MODEL_CONFIGS)


@pytest.mark.parametrize("name", ["unet", "mask_rcnn_R_18_FPN"])
def test_a_study_config_is_its_scratch_recipe_plus_the_study_settings(name: str) -> None:
    changed = _changed(CONFIGS / "study" / f"{name}.yaml", CONFIGS / "scratch" / f"{name}.yaml")
    assert set(changed) <= _settings(CONFIGS / "study" / "Base-Study.yaml")
    assert changed["SOLVER.AMP.ENABLED"] is True and changed["DATALOADER.CACHE_IMAGES"] is True


@pytest.mark.parametrize(("name", "iters"), [("unet", 300), ("fcn8s", 500)])
def test_a_parity_config_is_its_paper_config_plus_the_parity_recipe(name: str, iters: int) -> None:
    changed = _changed(CONFIGS / "amp_parity" / f"{name}.yaml", CONFIGS / f"{name}.yaml")
    assert set(changed) <= _settings(CONFIGS / "amp_parity" / "Base-Parity.yaml") | {"SOLVER.MAX_ITER"}
    assert changed["SOLVER.MAX_ITER"] == iters and changed["MODEL.SEMSEG_HEADS.WIDTH_SCALE"] == 0.125
    assert changed["SOLVER.IMS_PER_BATCH"] == 16
