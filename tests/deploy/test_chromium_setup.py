"""The set-up's chromium step is soft: without apt it records why, and the set-up goes on."""

from __future__ import annotations

import shutil

from bootstrap import chromium


def test_missing_apt_is_recorded_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert chromium.ensure_chromium(tmp_path) is False
    reason = (tmp_path / chromium.REASON_FILE).read_text()
    assert "apt-get is not available" in reason


def test_present_chromium_clears_the_reason(tmp_path, monkeypatch):
    (tmp_path / chromium.REASON_FILE).write_text("old reason\n")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert chromium.ensure_chromium(tmp_path) is True
    assert not (tmp_path / chromium.REASON_FILE).exists()
