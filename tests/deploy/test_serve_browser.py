"""The browser demo in a real browser: Debian's chromium driven by Playwright.

tools/serve.py runs a tiny U-Net on a free loopback port; the test uploads a generated chair
image, waits for the overlay, compares the page's class mask with the model's own output,
then sends bad input (non-image, truncated, empty, oversized) and reads the messages. The
screenshot lands in the test's tmp folder, and also at $SEMSEG_SERVE_SCREENSHOT when set
(README's docs/serve.png is made that way).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import semseg_heads  # noqa: F401
from chairseg.data.synthetic import render_sample
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.engine import Predictor
from semseg_heads.modeling import InferenceSettings

SERVE_EXTRA = "the serve extra is not installed: pip install -e projects/ChairSegments[serve]"
pytest.importorskip("fastapi", reason=SERVE_EXTRA)
sync_api = pytest.importorskip("playwright.sync_api", reason=SERVE_EXTRA)
from chairseg.serve import ServedModel, UploadError, generated_samples  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "ChairSegments" / "unet.yaml"
TINY = ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625"]


def chromium_path() -> str | None:
    return os.environ.get("SEMSEG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, cfg with the served weights) of a running tools/serve.py."""
    tmp = tmp_path_factory.mktemp("serve")
    cfg = get_semseg_heads_cfg(str(CONFIG), TINY)
    torch.manual_seed(0)
    model = Predictor(cfg).model
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random weights with a non-trivial mask
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    weights = tmp / "unet_tiny.pth"
    torch.save({"model": model.state_dict()}, weights)
    cfg.MODEL.WEIGHTS = str(weights)
    port = free_port()
    log = open(tmp / "server.log", "w")
    cmd = [
        sys.executable, str(REPO / "tools" / "serve.py"), "--config-file", str(CONFIG), "--port", str(port),
        "--samples", "1", "MODEL.WEIGHTS", str(weights), *TINY,
    ]  # fmt: skip
    server = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            log.close()
            pytest.fail(f"tools/serve.py did not start: {(tmp / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield url, cfg
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def page(served):
    path = chromium_path()
    if path is None:
        # The set-up (bootstrap/chromium.py) wrote why it could not install chromium.
        reason_file = Path(sys.prefix) / "chromium-unavailable.txt"
        why = reason_file.read_text().strip() if reason_file.is_file() else "the set-up has not run"
        pytest.skip(
            f"Debian's chromium is not installed ({why}); Playwright's own browser download cannot "
            "reach its servers here, so the browser test needs `apt-get install -y chromium`"
        )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1000, "height": 760})
        pg.goto(served[0])
        yield pg
        browser.close()


def submit(page, files) -> None:
    page.set_input_files("#image", files)
    page.click("#run")


def message(page, text: str) -> None:
    sync_api.expect(page.locator("#message")).to_contain_text(text, timeout=60_000)
    assert page.locator("#result").is_hidden()


def test_upload_chair_and_compare_mask(page, served, tmp_path):
    _, cfg = served
    rgb, _ = render_sample(np.random.default_rng(7), 96)
    submit(page, {"name": "chair.png", "mimeType": "image/png", "buffer": png_bytes(Image.fromarray(rgb))})
    page.wait_for_selector("#result", state="visible", timeout=120_000)
    sync_api.expect(page.locator("#overlay")).to_have_attribute(
        "src", __import__("re").compile("^data:image/png")
    )
    assert (
        page.locator("#overlay").evaluate("img => img.complete && img.naturalWidth") == 384
    )  # drawn upscaled

    mask_url = page.locator("#mask").get_attribute("src")
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(mask_url.split(",", 1)[1]))))
    direct = Predictor(cfg)(np.ascontiguousarray(rgb[:, :, ::-1]))["sem_seg"].argmax(0).numpy()
    assert shown.shape == direct.shape == (96, 96)
    assert 0 < direct.sum() < direct.size, "the tiny model's mask should hold both classes"
    assert float((shown == direct).mean()) >= 0.999

    share = float(page.inner_text("#share").rstrip("%"))
    assert abs(share - 100 * float((direct == 1).mean())) < 0.2
    assert page.inner_text("#time").endswith(" ms")

    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SEMSEG_SERVE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["SEMSEG_SERVE_SCREENSHOT"])


def test_bad_inputs_get_messages(page):
    submit(page, {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture\n"})
    message(page, "'notes.txt' is not an image")

    good = png_bytes(Image.fromarray(render_sample(np.random.default_rng(1), 64)[0]))
    submit(page, {"name": "cut.png", "mimeType": "image/png", "buffer": good[: len(good) // 2]})
    message(page, "'cut.png' is truncated or corrupt")

    submit(page, {"name": "empty.png", "mimeType": "image/png", "buffer": b""})
    message(page, "'empty.png' is empty")

    submit(page, [])
    message(page, "No image")

    huge = png_bytes(Image.new("L", (7000, 6000)))  # 42 megapixels, a small PNG
    submit(page, {"name": "huge.png", "mimeType": "image/png", "buffer": huge})
    message(page, "the limit is 40 megapixels")
    assert "Traceback" not in page.content()


def test_wide_image_is_resized_and_sample_works(page):
    strip = png_bytes(Image.new("RGB", (2000, 10), (120, 90, 60)))  # 200:1, over the 16:1 limit
    submit(page, {"name": "strip.png", "mimeType": "image/png", "buffer": strip})
    message(page, "'strip.png' is 2000x10 pixels, an aspect ratio of 200:1; the limit is 16:1")

    wide = png_bytes(Image.new("RGB", (2100, 140), (120, 90, 60)))
    submit(page, {"name": "wide.png", "mimeType": "image/png", "buffer": wide})
    page.wait_for_selector("#result", state="visible", timeout=120_000)
    assert "Resized from 2100x140 to 2048x137" in page.inner_text("#note")

    page.set_input_files("#image", [])
    page.select_option("#sample", "generated chair 1")
    page.click("#run")
    page.wait_for_selector("#result", state="visible", timeout=120_000)
    assert page.inner_text("#model-used") == "unet"


def test_inference_choice_runs_the_sliding_window(page, served):
    _, cfg = served
    page.set_input_files("#image", [])
    page.select_option("#sample", "generated chair 1")
    page.select_option("#inference", "slide")
    page.click("#run")
    used = page.locator("#inference-used")
    sync_api.expect(used).to_contain_text("sliding window, tiles 64 px", timeout=120_000)
    mask_url = page.locator("#mask").get_attribute("src")
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(mask_url.split(",", 1)[1]))))
    predictor = Predictor(cfg)
    rgb = generated_samples(1)["generated chair 1"]
    settings = replace(predictor.inference, mode="slide")
    direct = predictor(np.ascontiguousarray(rgb[:, :, ::-1]), inference=settings)["sem_seg"].argmax(0).numpy()
    assert shown.shape == direct.shape == (128, 128)
    assert float((shown == direct).mean()) >= 0.999
    page.select_option("#inference", "config")


def test_inference_choices_of_a_served_model():
    def predict(image, **kwargs):
        raise AssertionError("not called")

    fixed = ServedModel("fixed", predict, None)
    assert fixed.settings_for("config") is None
    with pytest.raises(UploadError, match="as configured only"):
        fixed.settings_for("slide")
    tiled = ServedModel("tiled", predict, None, InferenceSettings(tile_size=64, stride=48))
    assert tiled.settings_for("whole") == InferenceSettings(mode="whole", tile_size=64, stride=48)
    with pytest.raises(UploadError, match="Unknown inference choice"):
        tiled.settings_for("tiles")
