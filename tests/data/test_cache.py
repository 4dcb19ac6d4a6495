"""DATALOADER.CACHE_IMAGES (semseg_heads.data.cache): same samples as DatasetMapper (which reads
the cached copies), memory estimate logged, refusal past the limit, cached copies never handed
out; worker defaults."""

import gc
import logging
import os
import pickle

import detectron2.data.transforms as T
import numpy as np
import pytest
import torch
from data_helpers import REPO, save
from detectron2.data import DatasetMapper
from detectron2.utils.file_io import PathManager

import semseg_heads.data.cache as cache_mod
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.data.cache import CachedDatasetMapper, estimate_cache_bytes, resolve_num_workers

UNET = f"{REPO}/configs/ChairSegments/unet.yaml"


@pytest.fixture
def records(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for i in range(5):
        image, label = str(tmp_path / "image" / f"{i}.png"), str(tmp_path / "label" / f"{i}.png")
        save(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8), image)
        save(rng.integers(0, 2, (64, 48), dtype=np.uint8), label)
        rec = {"file_name": image, "sem_seg_file_name": label, "image_id": i}
        if i % 2:  # sizes from the records or, without them, from the file headers
            rec.update(height=64, width=48)
        out.append(rec)
    return out


def cfg(*opts):
    return get_semseg_heads_cfg(UNET, ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN", "(64,)", *opts])


def test_cached_samples_equal_datasetmapper_samples(records):
    c = cfg("INPUT.MAX_SIZE_TRAIN", "64")
    plain, cached = DatasetMapper(c, is_train=True), CachedDatasetMapper(c, records, is_train=True)
    for i, rec in enumerate(records * 2):
        np.random.seed(i)  # the flip's coin, the same for both
        a = plain(dict(rec))
        np.random.seed(i)
        b = cached(dict(rec))
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["sem_seg"], b["sem_seg"])
        assert a["sem_seg"].dtype == b["sem_seg"].dtype == torch.long
        assert "sem_seg_file_name" not in b and b["image_id"] == rec["image_id"]
    # Batches are copies: writing into one leaves the cache as it was.
    b = cached(dict(records[0]))
    before = b["image"].clone()
    b["image"].zero_()
    b["sem_seg"].fill_(7)
    again = cached(dict(records[0]))
    assert torch.equal(again["image"].flip(-1), before) or torch.equal(again["image"], before)
    assert int(again["sem_seg"].max()) <= 1


def test_samples_come_from_memory_through_datasetmapper(records):
    """Detectron2's own DatasetMapper.__call__ reads the cached copies (the files may go), and
    each sample keeps its record's file name."""
    c = cfg("INPUT.MAX_SIZE_TRAIN", "64")
    cached = CachedDatasetMapper(c, records, is_train=True)
    np.random.seed(0)
    first = cached(dict(records[0]))
    for r in records:
        os.remove(r["file_name"])
        os.remove(r["sem_seg_file_name"])
    np.random.seed(0)
    again = cached(dict(records[0]))
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["sem_seg"], again["sem_seg"])
    assert again["file_name"] == records[0]["file_name"]
    with pytest.raises(FileNotFoundError, match="not in a live DATALOADER.CACHE_IMAGES cache"):
        PathManager.open(cached.cache.path("/nowhere.png"), "rb")
    # A copy (as a spawned loader worker unpickles it) serves on its own, the original gone.
    copy = pickle.loads(pickle.dumps(cached))
    del cached
    gc.collect()
    np.random.seed(0)
    assert torch.equal(copy(dict(records[0]))["image"], first["image"])


def test_same_size_resize_is_a_new_augmentation(records):
    c = cfg("INPUT.MAX_SIZE_TRAIN", "64")
    plain, cached = DatasetMapper(c, is_train=True), CachedDatasetMapper(c, records, is_train=True)
    resize = [a for a in plain.augmentations.augs if isinstance(a, T.ResizeShortestEdge)][0]
    skip = [a for a in cached.augmentations.augs if isinstance(a, T.ResizeShortestEdge)][0]
    assert type(resize) is T.ResizeShortestEdge and type(skip) is not T.ResizeShortestEdge
    assert (skip.short_edge_length, skip.max_size, skip.sample_style) == (
        resize.short_edge_length, resize.max_size, resize.sample_style,
    )  # fmt: skip
    image = np.zeros((64, 48, 3), np.uint8)
    assert isinstance(skip.get_transform(image), T.NoOpTransform)
    assert isinstance(resize.get_transform(image), T.ResizeTransform)


def test_memory_estimate_logged_and_limit_refused(records, caplog):
    need = estimate_cache_bytes(records)
    assert need == 5 * 64 * 48 * 4
    with caplog.at_level(logging.INFO, logger="semseg_heads.data.cache"):
        CachedDatasetMapper(cfg(), records)
    assert "caching 5 decoded training images" in caplog.text and "MiB" in caplog.text
    refused = r"more than DATALOADER.CACHE_MAX_MB \(0\).*DATALOADER.CACHE_IMAGES False"
    with pytest.raises(ValueError, match=refused):
        CachedDatasetMapper(cfg("DATALOADER.CACHE_MAX_MB", "0"), records)


def test_auto_worker_count(monkeypatch):
    def cpus(n):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: n)

    c = cfg("DATALOADER.NUM_WORKERS", "-1")
    cpus(2)
    assert resolve_num_workers(c) == 0
    cpus(16)
    assert resolve_num_workers(c) == 4
    cpus(6)
    assert resolve_num_workers(c) == 3
    assert resolve_num_workers(c, cached=True) == 0
    assert resolve_num_workers(cfg("DATALOADER.NUM_WORKERS", "3")) == 3
    with pytest.raises(ValueError, match="DATALOADER.NUM_WORKERS is -2"):
        resolve_num_workers(cfg("DATALOADER.NUM_WORKERS", "-2"))


@pytest.mark.parametrize("setting,cached", [("True", True), ("None", True), ("False", False)])
def test_trainer_loader_uses_the_cache(records, monkeypatch, setting, cached):
    """The trainer's loader caches when told to and, by default (None: auto), when it fits."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from semseg_heads.engine import Trainer

    name = f"test_cache_train_{setting}"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [dict(r) for r in records])
        MetadataCatalog.get(name).set(stuff_classes=["background", "chair"], ignore_label=255)
    decoded = []
    original = CachedDatasetMapper._decode
    monkeypatch.setattr(
        cache_mod.CachedDatasetMapper, "_decode", lambda self, r: decoded.append(r) or original(self, r)
    )
    c = cfg(
        "DATASETS.TRAIN", f"('{name}',)", "DATALOADER.CACHE_IMAGES", setting,
        "DATALOADER.NUM_WORKERS", "-1", "SOLVER.IMS_PER_BATCH", "3",
    )  # fmt: skip
    it = iter(Trainer.build_train_loader(c))
    for _ in range(4):
        batch = next(it)
        assert len(batch) == 3 and batch[0]["image"].shape == (3, 64, 48)
    # Cached: each decoded once, before the first batch.
    assert len(decoded) == (len(records) if cached else 0)


def test_auto_caches_what_fits(records, caplog, monkeypatch):
    """CACHE_IMAGES None (the default) caches within CACHE_MAX_MB and a quarter of the free
    memory, and otherwise reads from disk; True and False are kept as given."""
    assert cfg().DATALOADER.CACHE_IMAGES is None
    with caplog.at_level(logging.INFO, logger="semseg_heads.data.cache"):
        assert cache_mod.resolve_cache_images(cfg(), records) is True
    assert "5 training images need about 0.1 MiB" in caplog.text and "): cached" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="semseg_heads.data.cache"):
        assert cache_mod.resolve_cache_images(cfg("DATALOADER.CACHE_MAX_MB", "0"), records) is False
    assert "read from disk; set DATALOADER.CACHE_IMAGES True to insist" in caplog.text
    monkeypatch.setattr(cache_mod, "_available_memory_bytes", lambda: 4 * estimate_cache_bytes(records) - 4)
    assert cache_mod.resolve_cache_images(cfg(), records) is False
    monkeypatch.setattr(cache_mod, "_available_memory_bytes", lambda: None)
    assert cache_mod.resolve_cache_images(cfg(), records) is True
    assert cache_mod.resolve_cache_images(cfg("DATALOADER.CACHE_IMAGES", "False"), records) is False
    insist = cfg("DATALOADER.CACHE_IMAGES", "True", "DATALOADER.CACHE_MAX_MB", "0")
    assert cache_mod.resolve_cache_images(insist, records) is True  # CachedDatasetMapper refuses it
    c = cfg()
    c.DATALOADER.CACHE_IMAGES = "yes"
    with pytest.raises(ValueError, match=r"DATALOADER.CACHE_IMAGES is 'yes'; expected True, False or None"):
        cache_mod.resolve_cache_images(c, records)


def test_unreadable_image_named(records):
    with open(records[1]["file_name"], "wb") as f:  # a record with its size (no header read first)
        f.write(b"not a png")
    with pytest.raises(ValueError, match=r"cannot decode a file of training record 1 \(.*1\.png"):
        CachedDatasetMapper(cfg(), records)


def test_unreadable_image_without_size_named(records):
    with open(records[1]["file_name"], "wb") as f:
        f.write(b"not a png")
    sized = [dict(r) for r in records]
    del sized[1]["height"], sized[1]["width"]  # the estimate must open the file for its size
    with pytest.raises(ValueError, match=r"training record 1 has no height/width and its image .*1\.png"):
        estimate_cache_bytes(sized)
