"""``python -m chairseg.measure.inference_paths``'s comparison on a tiny U-Net: every path runs,
fp32 paths agree with eager fp32, and nothing is left in the temporary folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from chairseg.measure.inference_paths import compare_inference_paths, format_paths  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_compare_inference_paths_tiny_unet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = compare_inference_paths(
        str(REPO / "configs" / "ChairSegments" / "unet.yaml"),
        ["MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625"],
        size=32,
        rounds=1,
        block=1,
        threads=1,
        int8=True,
    )
    rows = result["rows"]
    assert set(rows) == {"eager-fp32", "eager-bf16", "eager-bf16+cl", "ort-fp32", "ort-int8"}
    assert rows["eager-fp32"]["argmax_agreement_vs_eager_fp32"] == 1.0
    assert rows["ort-fp32"]["argmax_agreement_vs_eager_fp32"] >= 0.999
    assert all(r["median_ms"] > 0 for r in rows.values())
    assert result["fastest_keeping_argmax"] in rows
    assert "fastest path keeping the argmax" in format_paths(result)
    assert list(tmp_path.iterdir()) == []  # weights and graphs removed with their folder
