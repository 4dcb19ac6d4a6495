"""The download tool against a zip served from 127.0.0.1: normal, corrupt, '../' member, errors."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from data_helpers import load_tool
from PIL import Image

from chairseg.data.download import (
    CorruptArchiveError,
    UnsafeArchiveError,
    download_chair_segments,
    download_file,
)


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def make_zip(prefix="Chair064/", extra=()) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for split, n in (("train", 3), ("val", 2)):
            for i in range(1, n + 1):
                mask = np.zeros((64, 64), np.uint8)
                mask[10:50, 20:40] = 255
                zf.writestr(
                    f"{prefix}{split}/image/{i}.png", _png(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
                )
                zf.writestr(f"{prefix}{split}/mask/{i}.png", _png(mask))
        for name, data in extra:
            zf.writestr(name, data)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    ranges: list[str | None] = []
    honour_range = True

    def do_GET(self):  # noqa: N802
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        if rng and self.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    _Handler.files, _Handler.ranges, _Handler.honour_range = {}, [], True
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield _Handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_normal_download_unpacks_prints_sha256_and_registers(server, tmp_path, capsys):
    handler, base = server
    data = make_zip()
    handler.files["/Chair064.zip"] = data
    tool = load_tool("download_chair_segments")
    root = tmp_path / "ChairSegments"
    argv = ["--url", base + "/Chair064.zip", "--root", str(root), "--no-progress"]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    assert f"sha256 {hashlib.sha256(data).hexdigest()}" in out
    assert "train: 3 images" in out and "val: 2 images" in out
    assert sorted(os.listdir(root / "Chair064" / "train" / "mask")) == ["1.png", "2.png", "3.png"]
    assert not (root / "Chair064.zip").exists()  # archive removed after unpacking
    # Existing data is not replaced without --force ...
    assert tool.main(argv) == 1
    assert "--force" in capsys.readouterr().err
    # ... and is with it.
    assert tool.main(argv + ["--force", "--keep-archive"]) == 0
    assert (root / "Chair064.zip").exists()

    from detectron2.data import DatasetCatalog

    from semseg_heads.data import register_chair_segments
    from semseg_heads.data.chair_segments import register_builtin_chair_segments

    try:
        register_chair_segments(str(root))
        assert len(DatasetCatalog.get("chair_segments_64_train_instance")) == 3
    finally:
        register_builtin_chair_segments()


def test_download_goes_through_torch_hub_and_keeps_an_existing_file(server, tmp_path, monkeypatch):
    handler, base = server
    data = make_zip()
    handler.files["/Chair064.zip"] = data
    import chairseg.data.download as download

    calls = []
    real = download.download_url_to_file
    monkeypatch.setattr(download, "download_url_to_file", lambda *a, **k: calls.append(a) or real(*a, **k))
    dest = tmp_path / "Chair064.zip"
    download_file(base + "/Chair064.zip", str(dest), progress=False)
    assert dest.read_bytes() == data and calls == [(base + "/Chair064.zip", str(dest))]
    download_file(base + "/Chair064.zip", str(dest), progress=False)  # already there: kept
    assert len(calls) == 1
    with pytest.raises(download.DownloadError, match=r"missing.zip: HTTP 404.*--url"):
        download_file(base + "/missing.zip", str(tmp_path / "missing.zip"), progress=False)
    assert sorted(os.listdir(tmp_path)) == ["Chair064.zip"]  # no partial file left behind


def test_corrupt_archive_is_rejected_and_removed(server, tmp_path):
    handler, base = server
    data = bytearray(make_zip())
    data[len(data) // 3] ^= 0xFF  # flip a byte inside a member: CRC error
    handler.files["/bad.zip"] = bytes(data)
    handler.files["/junk.zip"] = b"not a zip at all" * 100
    root = tmp_path / "root"
    for name in ("/bad.zip", "/junk.zip"):
        with pytest.raises(CorruptArchiveError, match="run again"):
            download_chair_segments(64, str(root), url=base + name, progress=False)
        assert not (root / "Chair064").exists()
        assert not (root / "Chair064.zip").exists()
    with pytest.raises(CorruptArchiveError, match="sha256"):
        handler.files["/ok.zip"] = make_zip()
        download_chair_segments(64, str(root), url=base + "/ok.zip", sha256="0" * 64, progress=False)


def test_member_outside_the_target_is_rejected_before_extracting(server, tmp_path):
    handler, base = server
    handler.files["/evil.zip"] = make_zip(extra=[("Chair064/../../evil.txt", b"gotcha")])
    handler.files["/abs.zip"] = make_zip(extra=[("/tmp/evil_abs.txt", b"gotcha")])
    root = tmp_path / "a" / "root"
    for name in ("/evil.zip", "/abs.zip"):
        with pytest.raises(UnsafeArchiveError, match="outside the target"):
            download_chair_segments(64, str(root), url=base + name, progress=False)
        assert not (root / "Chair064").exists()
    assert not (tmp_path / "a" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not os.path.exists("/tmp/evil_abs.txt")
    assert os.listdir(root) == []  # the rejected archive is deleted, never reused by the next run


def test_unreachable_url_is_one_line_naming_it(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/Chair064.zip"
    tool = load_tool("download_chair_segments")
    assert tool.main(["--url", url, "--root", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and url in err and "cannot connect" in err and "run again" in err


def test_archive_without_top_folder_lands_under_chair064(server, tmp_path):
    handler, base = server
    handler.files["/flat.zip"] = make_zip(prefix="")
    result = download_chair_segments(64, str(tmp_path), url=base + "/flat.zip", progress=False)
    assert result["splits"] == {"train": 3, "val": 2}
    assert (tmp_path / "Chair064" / "val" / "image" / "2.png").exists()
