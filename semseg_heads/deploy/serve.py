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
``max_bytes``, an image over ``max_pixels`` (refused) or with a side over ``max_side``
(resized down, and the page says so).
"""

from __future__ import annotations

import base64
import html
import io
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from semseg_heads.modeling.sliding_window import InferenceSettings

__all__ = ["Limits", "ServedModel", "create_app", "decode_upload", "UploadError", "generated_samples"]

logger = logging.getLogger(__name__)
DRAW_MIN_SIDE = 384


class UploadError(ValueError):
    """An upload the demo cannot segment; the message is shown on the page."""


@dataclass(frozen=True)
class Limits:
    """Bounds on uploads: bigger files / images are refused, longer sides resized."""

    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_side: int = 2048

    def describe(self) -> str:
        return (
            f"files up to {self.max_bytes // 2**20} MB and {self.max_pixels / 1e6:g} megapixels; "
            f"images with a side over {self.max_side} px are scaled down"
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
    try:
        image.load()  # decoding happens here: truncation shows up now, not at open
        image = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise UploadError(f"'{name}' is truncated or corrupt and cannot be decoded ({e}).") from None
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
    """Chair composites from semseg_heads' generator (imported here: it is not light)."""
    from semseg_heads.data.synthetic import render_sample

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


def segment(
    model: ServedModel,
    image_rgb: np.ndarray,
    lock: threading.Lock,
    inference: InferenceSettings | None = None,
) -> dict[str, Any]:
    """Run ``model`` on an RGB image (with ``inference`` in place of its configured settings
    when given); the page's numbers and pictures."""
    from detectron2.utils.visualizer import Visualizer

    kwargs = {} if inference is None else {"inference": inference}
    with lock:  # one inference at a time: the CPU threads are shared anyway
        t0 = time.perf_counter()
        outputs = model.predict(np.ascontiguousarray(image_rgb[:, :, ::-1]), **kwargs)
        seconds = time.perf_counter() - t0
    classes = outputs["sem_seg"].argmax(dim=0).to("cpu")
    mask = classes.numpy().astype(np.uint8)
    # Small images (Chair Segments is 64x64) are drawn upscaled so the labels stay legible.
    scale = max(1.0, DRAW_MIN_SIDE / min(image_rgb.shape[:2]))
    drawn = Visualizer(image_rgb, model.metadata, scale=scale).draw_sem_seg(classes, alpha=0.5).get_image()
    names = list(model.metadata.get("stuff_classes", []))
    chair = _chair_index(names)
    return {
        "model": model.name,
        "inference": _describe(inference or model.inference),
        "width": int(image_rgb.shape[1]),
        "height": int(image_rgb.shape[0]),
        "inference_ms": round(seconds * 1000, 1),
        "chair_share": None if chair is None else float((mask == chair).mean()),
        "class_shares": {n: float((mask == i).mean()) for i, n in enumerate(names)},
        "input_png": _png_data_url(image_rgb),
        "overlay_png": _png_data_url(drawn),
        "mask_png": _png_data_url(mask),
    }


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
    ``GET /healthz``."""
    if not models:
        raise ValueError("the demo needs at least one model")
    by_name = {m.name: m for m in models}
    if len(by_name) != len(models):
        raise ValueError(f"model names must differ: {[m.name for m in models]}")
    samples = dict(samples or {})
    lock = threading.Lock()
    app = FastAPI(title="semseg_heads demo", docs_url=None, redoc_url=None)

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

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "models": list(by_name)}

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
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
        note = ""
        if isinstance(image, UploadFile) and image.filename:
            data = await image.read(limits.max_bytes + 1)
            try:
                rgb, note = decode_upload(data, image.filename, limits)
            except UploadError as e:
                return refuse(str(e))
        elif sample:
            if sample not in samples:
                return refuse(f"Unknown sample '{sample}'.")
            rgb = samples[sample]
        else:
            return refuse("No image: choose an image file or a sample first.")
        try:
            # off the event loop: the page stays responsive while the model runs
            reply = await run_in_threadpool(segment, chosen, rgb, lock, inference)
        except Exception:  # the page gets a sentence; the server log keeps the traceback
            logger.exception(f"model '{chosen.name}' failed")
            return refuse(f"Model '{chosen.name}' failed on this image; the server log has the details.")
        reply["note"] = note
        return JSONResponse(reply)

    return app
