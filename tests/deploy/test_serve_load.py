"""The browser demo's app under load, without a browser: uvicorn serves it on a loopback port
in a thread; a fake predictor that waits for the test's signal stands in for a slow model, so
every check is deterministic (no timing assertions)."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from detectron2.data.catalog import Metadata
from PIL import Image

pytest.importorskip("fastapi", reason="the deploy extra is not installed: pip install -e .[deploy]")
uvicorn = pytest.importorskip("uvicorn", reason="the deploy extra is not installed: pip install -e .[deploy]")

from chairseg.serve import (  # noqa: E402
    Limits,
    ServedModel,
    UploadError,
    create_app,
    decode_upload,
    segment,
)

META = Metadata(name="test_serve_load", stuff_classes=["background", "chair"])


class SlowModel:
    """A predictor that blocks until ``release`` is set (the stand-in for a long inference)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, bgr: np.ndarray) -> dict[str, torch.Tensor]:
        self.started.set()
        self.release.wait(timeout=120)  # bounded, so a broken test cannot hang the suite
        return {"sem_seg": torch.zeros(2, *bgr.shape[:2])}


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (name, data) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post(url: str, fields: dict[str, str], files: dict | None = None) -> tuple[int, dict, Any]:
    """(status, JSON body, headers: case-insensitive) of a POST /predict."""
    body, ctype = _multipart(fields, files or {})
    req = urllib.request.Request(url + "predict", data=body, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def slow_server():
    """(url, SlowModel) of the app with a queue of one, served by uvicorn in a thread."""
    model = SlowModel()
    app = create_app(
        [ServedModel("slow", model, META)], {"sample": np.zeros((8, 8, 3), np.uint8)}, Limits(queue_size=1)
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", model
    model.release.set()
    server.should_exit = True
    thread.join(timeout=30)


def _start_slow_request(url: str, model: SlowModel) -> tuple[threading.Thread, list]:
    answers: list = []
    t = threading.Thread(target=lambda: answers.append(post(url, {"sample": "sample"})), daemon=True)
    t.start()
    assert model.started.wait(timeout=60), "the first request never reached the model"
    return t, answers


def test_healthz_answers_while_an_inference_runs(slow_server):
    url, model = slow_server
    first, answers = _start_slow_request(url, model)
    health = get_json(url + "healthz")
    # answered while the model was still inside its (blocked) call
    assert not model.release.is_set() and not answers
    assert health["ok"] is True and health["queued"] == 1 and health["queue_size"] == 1
    assert urllib.request.urlopen(url, timeout=60).status == 200  # the page too
    model.release.set()
    first.join(timeout=60)
    status, reply, _ = answers[0]
    assert status == 200 and reply["model"] == "slow" and reply["class_shares"]["background"] == 1.0


def test_busy_answer_when_the_queue_is_full(slow_server):
    url, model = slow_server
    first, answers = _start_slow_request(url, model)
    status, reply, headers = post(url, {"sample": "sample"})
    assert status == 503
    wait = int(headers["Retry-After"])
    assert wait >= 1 and reply["retry_after"] == wait
    assert "busy" in reply["error"] and f"retry in {wait} s" in reply["error"]
    model.release.set()
    first.join(timeout=60)
    assert answers[0][0] == 200
    # the queue has drained: the next request is admitted again
    assert post(url, {"sample": "sample"})[0] == 200
    assert get_json(url + "healthz")["queued"] == 0


@pytest.mark.parametrize("size", [(2000, 10), (10, 2000)])
def test_extreme_aspect_ratio_is_refused_naming_the_limit(slow_server, size):
    with pytest.raises(
        UploadError, match=rf"is {size[0]}x{size[1]} pixels, an aspect ratio of 200:1; the limit is 16:1"
    ):
        decode_upload(png(*size), "strip.png", Limits())
    url, model = slow_server
    status, reply, _ = post(url, {}, {"image": ("strip.png", png(*size))})
    assert status == 400 and "the limit is 16:1" in reply["error"] and "Traceback" not in reply["error"]
    assert not model.started.is_set()  # refused before the model


@pytest.mark.parametrize("size", [(2000, 125), (125, 2000)])
def test_elongated_image_at_the_limit_is_segmented_by_a_real_model(size):
    """16:1 reaches a 64-px U-Net as 64x4 (the case that failed at 200:1 reached it as 64x0)."""
    from semseg_heads.config import get_semseg_heads_cfg
    from semseg_heads.engine import Predictor

    cfg = get_semseg_heads_cfg(
        str(Path(__file__).resolve().parents[2] / "configs" / "ChairSegments" / "unet.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625"],
    )
    rgb, note = decode_upload(png(*size), "long.png", Limits())
    reply = segment(ServedModel("unet", Predictor(cfg), META), rgb, threading.Lock())
    assert (reply["width"], reply["height"]) == size and note == ""
    assert abs(sum(reply["class_shares"].values()) - 1.0) < 1e-6


def test_class_map_equals_argmax():
    from chairseg.serve import _class_map

    logits = torch.randn(5, 30, 20, generator=torch.Generator().manual_seed(0))
    logits[:, 0, 0] = 1.0  # a tie: the lower class id wins, as with argmax
    assert np.array_equal(_class_map(logits), logits.argmax(0).numpy())


def test_16_bit_upload_is_shown_as_viewers_show_it():
    """PIL's convert("RGB") clips 16-bit grayscale to white: the page scales it to 8 bits, as
    dataset registration does; a float image gets a sentence naming it."""
    deep = np.full((20, 30), 30000, np.uint16)
    deep[5:15, 10:20] = 60000
    buf = io.BytesIO()
    Image.fromarray(deep).save(buf, format="PNG")
    rgb, _ = decode_upload(buf.getvalue(), "deep.png", Limits())
    assert rgb.shape == (20, 30, 3) and rgb[0, 0, 0] == round(30000 * 255 / 65535) and rgb[10, 15, 0] == 233
    buf = io.BytesIO()
    Image.fromarray(deep.astype(np.float32), "F").save(buf, format="TIFF")
    with pytest.raises(UploadError, match=r"'float\.tif' is a floating-point image"):
        decode_upload(buf.getvalue(), "float.tif", Limits())
