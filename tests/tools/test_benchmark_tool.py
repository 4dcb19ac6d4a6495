"""tools/benchmark.py's command line (the measurements: tests/utils/test_benchmark.py)."""

import pytest
from tools_helpers import load_tool


def test_existing_json_is_refused_before_measuring(tmp_path, capsys, monkeypatch):
    tool = load_tool("benchmark")
    monkeypatch.setattr(tool, "run_benchmark", lambda s: pytest.fail("measured before refusing"))
    out = tmp_path / "figures.json"
    out.write_text("earlier")
    with pytest.raises(SystemExit) as e:
        tool.main(["--json", str(out)])
    assert e.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "earlier"


def test_overwrite_replaces_the_json(tmp_path, monkeypatch):
    tool = load_tool("benchmark")
    monkeypatch.setattr(tool, "run_benchmark", lambda s: {"threads": s.threads, "profile": "dropped"})
    monkeypatch.setattr(tool, "format_report", lambda r: "report")
    out = tmp_path / "figures.json"
    out.write_text("earlier")
    tool.main(["--json", str(out), "--overwrite", "--threads", "1"])
    assert out.read_text().replace(" ", "").replace("\n", "") == '{"threads":1}'
