"""The browser demo: a FastAPI app with one small page (``tools/serve.py`` starts it).

A person uploads an image or picks a generated sample, chooses a model when several are
served and how it infers (as configured; resized to the model's input size; the whole image at
native resolution; or sliding windows, ``semseg_heads.modeling.sliding_window``), and sees the
input, the predicted classes drawn by Detectron2's ``Visualizer``, the chair share and the
inference time. Why FastAPI + a hand-written page rather than Gradio:
FastAPI, Starlette, uvicorn and python-multipart are small wheels, where Gradio ships its own
web front-end and pulls in many more packages, each one more to resolve against Detectron2
v0.6's numpy/Pillow pins in a fresh set-up; and a page with stable element ids is simple to
drive from Playwright.

Bad input gets a message on the page (HTTP 400 with ``{"error": ...}``), never a traceback:
an empty upload, a file that is not an image, a truncated image, a file over
``max_bytes``, an image over ``max_pixels`` or more elongated than ``max_aspect`` (refused),
or with a side over ``max_side`` (resized down, and the page says so).

Under load: the event loop only parses requests and answers; reading, decoding, inference,
drawing and PNG encoding run one request at a time on a worker thread, so ``/healthz`` and the
page answer while large uploads are processed. At most ``queue_size`` uploads are admitted
(being processed or waiting); beyond that the answer is HTTP 503 with ``Retry-After`` and a
sentence ("busy, retry in N s"). Large arrays are dropped when a request ends and the C heap is
handed back to the system (glibc ``malloc_trim``) when the queue empties, so memory returns
near its idle level after a burst.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import ctypes.util
import html
import io
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.datastructures import UploadFile

from semseg_heads.data.labelmaps import image_8bit
from semseg_heads.modeling.sliding_window import InferenceSettings
from semseg_heads.utils.visualize import overlay_sem_seg

__all__ = ["Limits", "ServedModel", "create_app", "decode_upload", "UploadError", "generated_samples"]

logger = logging.getLogger(__name__)
DRAW_MIN_SIDE = 384
# Pictures on the page are shown 384 px wide: drawing and sending them larger only costs time
# and memory (a 2048-px overlay is a 12 MB figure per request).
DRAW_MAX_SIDE = 1024


class UploadError(ValueError):
    """An upload the demo cannot segment; the message is shown on the page."""


@dataclass(frozen=True)
class Limits:
    """Bounds on uploads: bigger files / images are refused, longer sides resized."""

    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_side: int = 2048
    # Longer side / shorter side. The models see images scaled to INPUT.MIN/MAX_SIZE_TEST (64 px
    # for Chair Segments): at 16:1 the short side is still 4 px there; a 2000x10 strip would
    # become less than one pixel.
    max_aspect: float = 16.0
    # Uploads admitted at once (one being processed, the rest waiting); more get HTTP 503.
    queue_size: int = 4

    def describe(self) -> str:
        return (
            f"files up to {self.max_bytes // 2**20} MB and {self.max_pixels / 1e6:g} megapixels, "
            f"aspect ratio up to {self.max_aspect:g}:1; images with a side over {self.max_side} px "
            "are scaled down"
        )


#: The page's inference choices: value -> label. "config" runs the model as configured.
INFERENCE_CHOICES = {
    "config": "as configured",
    "resize": "resize to the model's input size",
    "whole": "whole image, native resolution",
    "slide": "sliding window",
}


@dataclass
class ServedModel:
    """A model on the page: ``predict(BGR uint8 image) -> {"sem_seg": logits (C, H, W)}``.

    ``inference``: its configured settings when ``predict`` also takes ``inference=`` (an
    ``InferenceSettings``; ``Predictor`` and ``ONNXPredictor`` do): then the page's other
    inference choices apply to it, with its tile size, stride and scale. None: as configured only.
    """

    name: str
    predict: Callable[..., Mapping[str, Any]]
    metadata: Any  # Detectron2 Metadata with stuff_classes (and stuff_colors)
    inference: InferenceSettings | None = None

    def settings_for(self, choice: str) -> InferenceSettings | None:
        """The settings of a page choice (None: as configured); ``UploadError`` if not offered."""
        if choice in ("", "config"):
            return None
        if choice not in INFERENCE_CHOICES:
            raise UploadError(
                f"Unknown inference choice '{choice}'; choose one of {', '.join(INFERENCE_CHOICES)}."
            )
        if self.inference is None:
            raise UploadError(f"Model '{self.name}' runs as configured only; choose 'as configured'.")
        return replace(self.inference, mode=choice)


def decode_upload(data: bytes, filename: str, limits: Limits) -> tuple[np.ndarray, str]:
    """An uploaded file -> (RGB uint8 image, note for the page); ``UploadError`` when unusable."""
    name = filename or "the upload"
    if not data:
        raise UploadError(f"'{name}' is empty (0 bytes): choose an image file.")
    if len(data) > limits.max_bytes:
        raise UploadError(f"'{name}' is larger than the limit of {limits.max_bytes // 2**20} MB.")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise UploadError(
            f"'{name}' is too large: the limit is {limits.max_pixels / 1e6:g} megapixels."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UploadError(
            f"'{name}' is not an image this page can read (PNG, JPEG, BMP, GIF, TIFF or WebP)."
        ) from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise UploadError(
            f"'{name}' is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {limits.max_pixels / 1e6:g} megapixels."
        )
    if max(width, height) > limits.max_aspect * min(width, height):
        raise UploadError(
            f"'{name}' is {width}x{height} pixels, an aspect ratio of "
            f"{max(width, height) / max(1, min(width, height)):.0f}:1; the limit is "
            f"{limits.max_aspect:g}:1 (the model sees images scaled down to a few dozen pixels, "
            "where its short side would vanish): crop it into squarer pieces."
        )
    try:
        image.load()  # decoding happens here: truncation shows up now, not at open
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError) as e:
        raise UploadError(f"'{name}' is truncated or corrupt and cannot be decoded ({e}).") from None
    # 16-bit grayscale as viewers show it (PIL's convert("RGB") would clip it to white)
    scaled, problem = image_8bit(image, name)
    if problem is not None:
        raise UploadError(f"'{name}' is {problem.detail}.")
    image = (scaled or image).convert("RGB")
    note = ""
    if max(image.size) > limits.max_side:
        scale = limits.max_side / max(image.size)
        new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        note = (
            f"Resized from {image.width}x{image.height} to {new[0]}x{new[1]} "
            f"(limit {limits.max_side} px a side)."
        )
        image = image.resize(new, Image.BILINEAR)
    return np.asarray(image), note


def generated_samples(count: int = 3, size: int = 128) -> dict[str, np.ndarray]:
    """Chair composites from the project's generator (imported here: it is not light)."""
    from chairseg.data.synthetic import render_sample

    return {
        f"generated chair {i + 1}": render_sample(np.random.default_rng(i), size)[0] for i in range(count)
    }


def _png_data_url(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _chair_index(classes: list[str]) -> int | None:
    lowered = [c.lower() for c in classes]
    if "chair" in lowered:
        return lowered.index("chair")
    return 1 if len(classes) == 2 else None


def _class_map(logits: Any) -> np.ndarray:
    """``logits.argmax(0)`` as uint8, one comparison per class: on a (2, 2000, 2000) map on this
    CPU (one thread) torch's argmax over the first dimension took 1.8 s, this 0.2 s. Ties go to
    the lower class id, as argmax's."""
    best, classes = logits[0], np.zeros(tuple(logits.shape[1:]), np.uint8)
    for k in range(1, int(logits.shape[0])):
        better = logits[k] > best
        classes[better.numpy()] = k
        best = torch.where(better, logits[k], best)
    return classes


def segment(
    model: ServedModel,
    image_rgb: np.ndarray,
    lock: threading.Lock,
    inference: InferenceSettings | None = None,
) -> dict[str, Any]:
    """Run ``model`` on an RGB image (with ``inference`` in place of its configured settings
    when given); the page's numbers and pictures."""
    kwargs = {} if inference is None else {"inference": inference}
    with lock:  # one inference at a time: the CPU threads are shared anyway
        t0 = time.perf_counter()
        outputs = model.predict(np.ascontiguousarray(image_rgb[:, :, ::-1]), **kwargs)
        seconds = time.perf_counter() - t0
    mask = _class_map(outputs["sem_seg"].to("cpu"))
    del outputs  # the logits (C x H x W float32) are the largest array here
    # Small images (Chair Segments is 64x64) are drawn upscaled so the labels stay legible;
    # large ones are drawn at the size the page shows (image and class map scaled down first:
    # the Visualizer's contours of a full-size map cost seconds).
    height, width = image_rgb.shape[:2]
    scale = min(max(1.0, DRAW_MIN_SIDE / min(height, width)), DRAW_MAX_SIDE / max(height, width))
    shown, shown_mask = image_rgb, mask
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        shown = np.asarray(Image.fromarray(image_rgb).resize(size, Image.BILINEAR))
        shown_mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
        scale = 1.0
    drawn = overlay_sem_seg(shown, shown_mask, model.metadata, scale=scale, alpha=0.5)
    names = list(model.metadata.get("stuff_classes", []))
    chair = _chair_index(names)
    return {
        "model": model.name,
        "inference": _describe(inference or model.inference),
        "width": int(width),
        "height": int(height),
        "inference_ms": round(seconds * 1000, 1),
        "chair_share": None if chair is None else float((mask == chair).mean()),
        "class_shares": {n: float((mask == i).mean()) for i, n in enumerate(names)},
        "input_png": _png_data_url(shown),
        "overlay_png": _png_data_url(drawn),
        "mask_png": _png_data_url(mask),
    }


def _libc_malloc_trim() -> Callable[[], None]:
    """glibc's ``malloc_trim(0)`` (hands freed heap pages back to the system), or a no-op on
    other C libraries. Without it, the arenas of the threads that decoded 100-MB images keep
    their peak size after a burst."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def _process(
    model: ServedModel,
    upload: UploadFile | None,
    rgb: np.ndarray | None,
    limits: Limits,
    lock: threading.Lock,
    inference: InferenceSettings | None = None,
) -> dict[str, Any]:
    """One request's work on the worker thread: read and decode the upload, segment, draw."""
    note = ""
    if upload is not None:
        upload.file.seek(0)
        data = upload.file.read(limits.max_bytes + 1)
        rgb, note = decode_upload(data, upload.filename or "", limits)
        del data
    reply = segment(model, rgb, lock, inference)
    reply["note"] = note
    return reply


def _describe(settings: InferenceSettings | None) -> str:
    if settings is None:
        return "as configured"
    scale = f" at scale {settings.scale:g}" if settings.scale != 1 else ""
    if settings.mode == "slide":
        return (
            f"sliding window, tiles {settings.tile_size} px, stride {settings.stride}, "
            f"{settings.blend} blend{scale}"
        )
    if settings.mode == "whole":
        return f"whole image, native resolution{scale}"
    return "resized to the model's input size"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>semseg_heads demo</title>
<style>
 body {{ font-family: sans-serif; margin: 1.5em; max-width: 1100px; }}
 form > * {{ margin-right: 1em; }}
 #message {{ color: #a00; font-weight: bold; min-height: 1.4em; margin: 0.8em 0; }}
 figure {{ display: inline-block; margin: 0 1em 0 0; vertical-align: top; }}
 figure img {{ width: 384px; image-rendering: pixelated; border: 1px solid #ccc; }}
 .limits {{ color: #666; font-size: 0.9em; }}
</style></head>
<body>
<h1>semseg_heads: semantic segmentation demo</h1>
<form id="form">
 <label>Image <input type="file" id="image" name="image" accept="image/*"></label>
 <label>or a sample <select id="sample" name="sample"><option value="">(none)</option>
  {samples}</select></label>
 <label {model_hidden}>Model <select id="model" name="model">{models}</select></label>
 <label>Inference <select id="inference" name="inference">{inference}</select></label>
 <button id="run" type="submit">Segment</button>
</form>
<p class="limits">Limits: {limits}.</p>
<div id="message" role="alert"></div>
<div id="result" hidden>
 <p>Model <b id="model-used"></b>: chair share <b id="share"></b>, inference <b id="time"></b>
  (<span id="inference-used"></span>) <span id="note"></span></p>
 <figure><img id="input" alt="input"><figcaption>input</figcaption></figure>
 <figure><img id="overlay" alt="prediction">
  <figcaption>prediction (Detectron2 Visualizer)</figcaption></figure>
 <img id="mask" alt="class ids" hidden>
</div>
<script>
const form = document.getElementById("form");
form.addEventListener("submit", async (event) => {{
  event.preventDefault();
  const message = document.getElementById("message");
  const result = document.getElementById("result");
  message.textContent = "Segmenting...";
  result.hidden = true;
  document.getElementById("overlay").removeAttribute("src");
  let reply;
  try {{
    const response = await fetch("predict", {{ method: "POST", body: new FormData(form) }});
    reply = await response.json();
  }} catch (err) {{
    message.textContent = "The server did not answer: " + err;
    return;
  }}
  if (reply.error) {{ message.textContent = reply.error; return; }}
  message.textContent = "";
  document.getElementById("model-used").textContent = reply.model;
  document.getElementById("share").textContent =
    reply.chair_share === null ? "n/a" : (100 * reply.chair_share).toFixed(1) + "%";
  document.getElementById("time").textContent = reply.inference_ms + " ms";
  document.getElementById("inference-used").textContent = reply.inference;
  document.getElementById("note").textContent = reply.note || "";
  document.getElementById("input").src = reply.input_png;
  document.getElementById("mask").src = reply.mask_png;
  document.getElementById("overlay").src = reply.overlay_png;
  result.hidden = false;
}});
</script>
</body></html>
"""


def create_app(
    models: list[ServedModel], samples: Mapping[str, np.ndarray] | None = None, limits: Limits = Limits()
) -> Any:
    """The FastAPI app: ``GET /`` the page, ``POST /predict`` (multipart: image | sample, model),
    ``GET /healthz`` (also the queue's length and limit)."""
    if not models:
        raise ValueError("the demo needs at least one model")
    if limits.queue_size < 1:
        raise ValueError(f"the queue size must be at least 1, got {limits.queue_size} (--queue-size)")
    by_name = {m.name: m for m in models}
    if len(by_name) != len(models):
        raise ValueError(f"model names must differ: {[m.name for m in models]}")
    samples = dict(samples or {})
    lock = threading.Lock()
    # One worker: requests are processed one at a time (the CPU's threads serve one inference
    # anyway), so at most one large image is decoded in memory at once.
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semseg-demo")
    trim = _libc_malloc_trim()
    state = {"admitted": 0, "seconds": 2.0}  # touched on the event loop only
    app = FastAPI(title="semseg_heads demo", docs_url=None, redoc_url=None)
    app.router.on_shutdown.append(lambda: worker.shutdown(wait=False, cancel_futures=True))

    def option(value: str) -> str:
        v = html.escape(value, quote=True)
        return f'<option value="{v}">{v}</option>'

    page = _PAGE.format(
        samples="".join(option(s) for s in samples),
        models="".join(option(m.name) for m in models),
        model_hidden="hidden" if len(models) == 1 else "",
        inference="".join(
            f'<option value="{v}">{html.escape(label)}</option>' for v, label in INFERENCE_CHOICES.items()
        ),
        limits=html.escape(limits.describe()),
    )

    def refuse(message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=400)

    def busy() -> JSONResponse:
        # Retry once the queue has had time to drain: its length times the recent time per request.
        wait = int(min(60, max(1, round(state["admitted"] * state["seconds"]))))
        return JSONResponse(
            {
                "error": f"The server is busy ({state['admitted']} images being processed or waiting, "
                f"its limit); retry in {wait} s.",
                "retry_after": wait,
            },
            status_code=503,
            headers={"Retry-After": str(wait)},
        )

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        # async: answered on the event loop itself, never waiting for a thread
        return {
            "ok": True,
            "models": list(by_name),
            "queued": state["admitted"],
            "queue_size": limits.queue_size,
        }

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        if state["admitted"] >= limits.queue_size:
            # The body is read and dropped chunk by chunk (nothing kept): a client still sending
            # its upload would otherwise see the connection closed instead of this answer.
            async for _ in request.stream():
                pass
            return busy()
        state["admitted"] += 1
        try:
            return await _predict(request)
        finally:
            state["admitted"] -= 1
            if state["admitted"] == 0:
                await asyncio.get_running_loop().run_in_executor(worker, trim)

    async def _predict(request: Request) -> JSONResponse:
        try:
            form = await request.form(max_files=1, max_fields=10, max_part_size=limits.max_bytes + 1)
        except Exception as e:  # Starlette refuses malformed or oversized multipart bodies
            return refuse(f"The upload could not be read: {e}")
        image, sample, model = form.get("image"), str(form.get("sample") or ""), str(form.get("model") or "")
        chosen = by_name.get(model or models[0].name)
        if chosen is None:
            return refuse(f"Unknown model '{model}'; this server has {', '.join(by_name)}.")
        try:
            inference = chosen.settings_for(str(form.get("inference") or ""))
        except UploadError as e:
            return refuse(str(e))
        upload, rgb = None, None
        if isinstance(image, UploadFile) and image.filename:
            upload = image
        elif sample:
            if sample not in samples:
                return refuse(f"Unknown sample '{sample}'.")
            rgb = samples[sample]
        else:
            return refuse("No image: choose an image file or a sample first.")

        def job() -> tuple[dict[str, Any], float]:
            t0 = time.perf_counter()
            return _process(chosen, upload, rgb, limits, lock, inference), time.perf_counter() - t0

        try:
            # off the event loop: reading, decoding, the model, drawing and encoding
            reply, seconds = await asyncio.get_running_loop().run_in_executor(worker, job)
        except UploadError as e:
            return refuse(str(e))
        except Exception:  # the page gets a sentence; the server log keeps the traceback
            logger.exception(f"model '{chosen.name}' failed")
            return refuse(f"Model '{chosen.name}' failed on this image; the server log has the details.")
        finally:
            await form.close()
        state["seconds"] = 0.7 * state["seconds"] + 0.3 * seconds  # recent time per request
        return JSONResponse(reply)

    return app
