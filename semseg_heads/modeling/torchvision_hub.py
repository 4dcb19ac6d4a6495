"""``torchvision://<name>`` in ``MODEL.WEIGHTS``: ImageNet starts that fetch themselves.

The papers start their encoders from ImageNet classifiers (FCN Sec. 3.1, DeconvNet Sec. 4.1,
Yu & Koltun Sec. 4: VGG16; the Chair Segments FCN-ResNet baselines: ResNet-50/101). As
Detectron2's ``detectron2://`` prefix does for its model zoo, a handler registered with
Detectron2's ``PathManager`` (at ``import semseg_heads``) resolves

    torchvision://vgg16  torchvision://vgg16_bn  torchvision://resnet50  torchvision://resnet101

to a local checkpoint: on first use it downloads the file that torchvision's weights enum
names (``IMAGENET1K_V1``) into ``torch.hub.get_dir()/checkpoints`` with torch.hub's
downloader, which checks the sha256 prefix carried by the file name and deletes a download
that fails it; converts it with ``convert_torchvision_state_dict``; and saves the converted
checkpoint beside it (``checkpoints/semseg_heads/<file>``) with ``"backbone_only": True``, the
mark of an intended partial start (the heads keep their own initialisation). Later uses
return the saved file.

Offline, the error names the URL and the routes that need no network: convert a copy of the
file with ``tools/convert_torchvision_weights.py``, or point ``SEMSEG_HEADS_TORCHVISION_MIRROR``
at a folder (``file:///...``) or server holding torchvision's files under their own names.
"""

from __future__ import annotations

import logging
import os
import urllib.error
from typing import Any

import torch
import torch.hub
import torchvision.models
from detectron2.utils.file_io import PathHandler, PathManager

from .torchvision_weights import (
    convert_torchvision_state_dict,
    load_state_dict_file,
    save_detectron2_checkpoint,
)

__all__ = [
    "MIRROR_ENV",
    "PREFIX",
    "URL_OVERRIDES",
    "WEIGHTS",
    "TorchvisionHandler",
    "TorchvisionWeightsError",
    "fetch_torchvision_weights",
    "weights_url",
]

logger = logging.getLogger(__name__)

PREFIX = "torchvision://"

#: ``torchvision://<name>`` -> the torchvision weights enum member whose ``.url`` is fetched.
#: V1 are the classic ImageNet files the papers and torchvision's FCN-ResNet started from.
WEIGHTS = {
    "vgg16": "VGG16_Weights.IMAGENET1K_V1",
    "vgg16_bn": "VGG16_BN_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
    "resnet101": "ResNet101_Weights.IMAGENET1K_V1",
}

#: ``<name>`` -> URL used instead of torchvision's (a private copy under another name; tests).
URL_OVERRIDES: dict[str, str] = {}

#: A base URL (``file:///folder`` or ``http://host/path``) holding torchvision's files under
#: their published names; replaces ``https://download.pytorch.org/models``.
MIRROR_ENV = "SEMSEG_HEADS_TORCHVISION_MIRROR"

_CONVERTED_DIR = "semseg_heads"


class TorchvisionWeightsError(RuntimeError):
    """A ``torchvision://`` start cannot be fetched, verified or converted (one-line message)."""


def weights_url(name: str) -> str:
    """The URL ``torchvision://<name>`` downloads (override, mirror, or torchvision's own)."""
    if name in URL_OVERRIDES:
        return URL_OVERRIDES[name]
    if name not in WEIGHTS:
        raise TorchvisionWeightsError(
            f"MODEL.WEIGHTS '{PREFIX}{name}': unknown name; expected one of "
            + ", ".join(PREFIX + n for n in sorted(WEIGHTS))
        )
    url = torchvision.models.get_weight(WEIGHTS[name]).url
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        url = mirror.rstrip("/") + "/" + os.path.basename(url)
    return url


def _offline_route(name: str, filename: str) -> str:
    out = f"{name}_semseg.pth"
    return (
        f"Without network access: fetch {filename} elsewhere, run "
        f"`python tools/convert_torchvision_weights.py "
        f"{filename} {out}` and set MODEL.WEIGHTS {out}; or set {MIRROR_ENV} to a folder or URL holding "
        "torchvision's files; or train from random weights with configs/ChairSegments/scratch/"
    )


def fetch_torchvision_weights(name: str) -> str:
    """Local path of the converted, backbone-only checkpoint for ``torchvision://<name>``.

    Downloads and converts on first use (see the module doc); raises
    ``TorchvisionWeightsError`` with a one-line message naming the URL when the download,
    its hash check or the conversion fails.
    """
    url = weights_url(name)
    filename = os.path.basename(url.split("?", 1)[0])
    checkpoints = os.path.join(torch.hub.get_dir(), "checkpoints")
    converted = os.path.join(checkpoints, _CONVERTED_DIR, filename)
    if os.path.isfile(converted):
        return converted

    raw = os.path.join(checkpoints, filename)
    if not os.path.isfile(raw):
        match = torch.hub.HASH_REGEX.search(filename)
        if match is None:
            raise TorchvisionWeightsError(
                f"MODEL.WEIGHTS '{PREFIX}{name}': {url} has no hash prefix in its file name "
                "('<name>-<sha256 prefix>.pth', as torchvision's), so the download cannot be verified"
            )
        os.makedirs(checkpoints, exist_ok=True)
        logger.info(f"{PREFIX}{name}: downloading {url} to {raw}")
        try:
            # torch.hub's downloader: a temporary file, renamed only once its sha256 matches.
            torch.hub.download_url_to_file(url, raw, hash_prefix=match.group(1), progress=False)
        except RuntimeError as e:
            if "invalid hash value" not in str(e):
                raise
            raise TorchvisionWeightsError(
                f"MODEL.WEIGHTS '{PREFIX}{name}': {url} failed its hash check ({e}); the download was deleted"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise TorchvisionWeightsError(
                f"MODEL.WEIGHTS '{PREFIX}{name}': cannot download {url} ({reason}). "
                + _offline_route(name, filename)
            ) from None

    try:
        state = load_state_dict_file(raw)
        model, dropped, arch = convert_torchvision_state_dict(state)
    except (OSError, ValueError, RuntimeError) as e:
        raise TorchvisionWeightsError(
            f"MODEL.WEIGHTS '{PREFIX}{name}': {raw} (from {url}) cannot be converted: "
            f"{str(e).splitlines()[0]}. Delete it to download it again"
        ) from None
    os.makedirs(os.path.dirname(converted), exist_ok=True)
    # Another process may have converted it meanwhile: the same bytes, replaced whole.
    save_detectron2_checkpoint(model, converted, overwrite=True)
    logger.info(
        f"{PREFIX}{name}: {arch}, {len(model)} backbone tensors -> {converted} "
        f"(not converted: {', '.join(dropped) or 'none'})"
    )
    return converted


class TorchvisionHandler(PathHandler):
    """``PathManager`` handler of ``torchvision://<name>`` (see the module doc)."""

    def _get_supported_prefixes(self) -> list[str]:
        return [PREFIX]

    def _get_local_path(self, path: str, **kwargs: Any) -> str:
        return fetch_torchvision_weights(path[len(PREFIX) :].strip("/"))

    def _open(self, path: str, mode: str = "r", **kwargs: Any):
        return PathManager.open(self._get_local_path(path), mode, **kwargs)


PathManager.register_handler(TorchvisionHandler())
