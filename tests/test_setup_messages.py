"""Set-up failures (network, pip) come out as one line naming the URL and what to do."""

from __future__ import annotations

import socket
import sys

import pytest

from bootstrap import install_detectron2 as d2


def _closed_port_url(path: str) -> str:
    with socket.socket() as s:  # a port nothing listens on: connection refused, no waiting
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}{path}"


def test_unreachable_index_names_the_url_and_what_to_do():
    url = _closed_port_url("/simple/pb1-detectron2/")
    with pytest.raises(d2.SetupError) as info:
        d2.find_archive_url(url)
    message = str(info.value)
    assert "\n" not in message and url in message and "--archive" in message


def test_unreachable_download_names_the_url(tmp_path):
    url = _closed_port_url("/pb1-detectron2-0.6.tar.gz")
    with pytest.raises(d2.SetupError, match="cannot fetch .*127.0.0.1.*run again") as info:
        d2.download(url, tmp_path / "x.tar.gz")
    assert "\n" not in str(info.value)


def test_pip_failure_is_a_setup_error_naming_the_index(tmp_path):
    with pytest.raises(d2.SetupError, match=r"pip install .*no-such-dir failed.*pypi|PIP_INDEX_URL") as info:
        d2.pip(sys.executable, "--no-deps", "--no-index", str(tmp_path / "no-such-dir"))
    assert "\n" not in str(info.value)
