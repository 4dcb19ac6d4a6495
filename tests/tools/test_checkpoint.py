"""Safe checkpoint loading: good files load, corrupt and unsafe ones give a clear error."""

import logging
import os
import pickle

import numpy as np
import pytest
import torch

from semseg_heads.checkpoint import (
    CheckpointLoadError,
    PartialWeightsError,
    SafeDetectionCheckpointer,
    load_checkpoint_file,
)


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def test_save_then_load_roundtrip(tmp_path):
    model = small_model()
    SafeDetectionCheckpointer(model, str(tmp_path)).save("model_0000001", iteration=1)
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    extra = SafeDetectionCheckpointer(other, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 1
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "content",
    [b"", b"definitely not a checkpoint", b"PK\x03\x04 truncated zip"],
    ids=["empty", "garbage", "bad-zip"],
)
def test_corrupt_file_error_names_the_file(tmp_path, content):
    path = tmp_path / "model_final.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointLoadError, match="model_final.pth"):
        SafeDetectionCheckpointer(small_model()).load(str(path))


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "model_0000009.pth"
    torch.save({"model": small_model().state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointLoadError, match=r"model_0000009\.pth.*(corrupt|truncated)"):
        load_checkpoint_file(str(path))


class _Payload:
    """Unpickling this would create a marker file: the load must refuse before that."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    _Payload.marker = str(marker)
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointLoadError, match="evil.pth.*other than tensors"):
        SafeDetectionCheckpointer(small_model()).load(str(path))
    assert not marker.exists()

    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps({"blobs": _Payload()}))
    with pytest.raises(CheckpointLoadError, match="evil.pkl"):
        load_checkpoint_file(str(pkl))
    assert not marker.exists()


def test_numpy_pkl_weights_load(tmp_path):
    """Detectron2 model-zoo .pkl files hold numpy arrays: those are allowed."""
    model = small_model()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "test"}, f)
    other = small_model()
    torch.nn.init.zeros_(other[0].weight)
    SafeDetectionCheckpointer(other).load(str(path))
    np.testing.assert_array_equal(other[0].weight.detach().numpy(), weights["0.weight"])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        SafeDetectionCheckpointer(small_model()).load(os.path.join(tmp_path, "nope.pth"))


def test_every_truncation_point_is_incomplete_or_corrupt(tmp_path):
    """Cut anywhere (1 byte included): an error naming the file, never "unsafe", never a raw
    OSError/EOFError from inside torch or pickle."""
    full = tmp_path / "full.pth"
    torch.save({"model": small_model().state_dict(), "iteration": 3}, full)
    data = full.read_bytes()
    path = tmp_path / "model_0000019.pth"
    for n in range(0, len(data), 7):
        path.write_bytes(data[:n])
        with pytest.raises(CheckpointLoadError, match=r"model_0000019\.pth' is incomplete or corrupt"):
            SafeDetectionCheckpointer(small_model()).load(str(path))


def test_pycls_pyth_keeps_detectron2_format_handling(tmp_path):
    model = small_model()
    path = tmp_path / "weights.pyth"
    torch.save({"model_state": model.state_dict()}, path)
    other = small_model()
    torch.nn.init.zeros_(other[0].weight)
    SafeDetectionCheckpointer(other).load(str(path))
    assert torch.equal(other[0].weight, model[0].weight)
    torch.save({"no_state": 1}, path)
    with pytest.raises(CheckpointLoadError, match="weights.pyth.*model_state"):
        SafeDetectionCheckpointer(other).load(str(path))


def _other_model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))  # other width


def test_weights_of_another_model_are_refused_naming_its_config(tmp_path):
    run = tmp_path / "output_fcn"
    run.mkdir()
    (run / "config.yaml").write_text("MODEL:\n  META_ARCHITECTURE: FCN\n  BACKBONE:\n    NAME: build_vgg16\n")
    SafeDetectionCheckpointer(_other_model(), str(run)).save("model_final")
    with pytest.raises(
        PartialWeightsError, match=r"match only 0 of the model's 6.*config\.yaml.*FCN.*ALLOW_PARTIAL"
    ):
        SafeDetectionCheckpointer(small_model()).load(str(run / "model_final.pth"))
    (run / "config.yaml").unlink()
    with pytest.raises(PartialWeightsError, match=r"no config\.yaml beside the file"):
        SafeDetectionCheckpointer(small_model()).load(str(run / "model_final.pth"))


def test_partial_weights_load_when_allowed_or_backbone_only(tmp_path, caplog):
    donor = small_model()
    state = {k: v for k, v in donor.state_dict().items() if k.startswith("0.")}  # 2 of 6 tensors
    path = tmp_path / "backbone.pth"
    torch.save({"model": state}, path)
    with pytest.raises(PartialWeightsError, match="match only 2 of"):
        SafeDetectionCheckpointer(small_model()).load(str(path))
    model = _zeroed()
    SafeDetectionCheckpointer(model, allow_partial=True).load(str(path))
    assert torch.equal(model[0].weight, donor[0].weight)
    torch.save({"model": state, "backbone_only": True}, path)
    model = _zeroed()
    with caplog.at_level(logging.INFO):
        SafeDetectionCheckpointer(model).load(str(path))
    assert torch.equal(model[0].weight, donor[0].weight)
    assert "Loaded 2 of 6 parameter tensors (4 unmatched)" in caplog.text


def _zeroed():
    model = small_model()
    torch.nn.init.zeros_(model[0].weight)
    return model


def test_loading_touches_no_module_of_another_library(tmp_path, monkeypatch):
    """The checkpointer is a plain subclass: while it reads a file (.pth and .pkl), the modules
    of Detectron2, fvcore, torch and pickle hold exactly what they held before."""
    import detectron2.checkpoint.detection_checkpoint as d2_checkpoint
    import fvcore.common.checkpoint as fvcore_checkpoint

    import semseg_heads.checkpoint as ours

    modules = (d2_checkpoint, fvcore_checkpoint, torch, pickle)
    seen = []
    real_load, real_find_class = torch.load, ours._ArraysOnlyUnpickler.find_class

    def observing_load(*args, **kwargs):  # the test's own probes, undone after the test
        seen.append(unchanged())
        return real_load(*args, **kwargs)

    def observing_find_class(self, module, name):
        seen.append(unchanged())
        return real_find_class(self, module, name)

    monkeypatch.setattr(torch, "load", observing_load)
    monkeypatch.setattr(ours._ArraysOnlyUnpickler, "find_class", observing_find_class)
    before = [dict(vars(m)) for m in modules]

    def unchanged():
        return all(
            vars(m).keys() == b.keys() and all(vars(m)[k] is b[k] for k in b) for m, b in zip(modules, before)
        )

    path = tmp_path / "model_final.pth"
    torch.save({"model": small_model().state_dict()}, path)
    SafeDetectionCheckpointer(small_model()).load(str(path))
    assert seen == [True]

    pkl = tmp_path / "weights.pkl"
    with open(pkl, "wb") as f:
        pickle.dump(
            {"model": {k: v.numpy() for k, v in small_model().state_dict().items()}, "__author__": "t"}, f
        )
    SafeDetectionCheckpointer(small_model()).load(str(pkl))
    assert len(seen) > 1 and all(seen)
    assert unchanged()


def test_caffe2_pkl_gets_detectron2_matching_heuristics(tmp_path):
    """A .pkl without Detectron2's "__author__" is read as Detectron2 reads a Caffe2 file:
    "blobs" unwrapped, "_momentum" entries dropped, matching by name heuristics."""
    model = small_model()
    blobs = {k: v.numpy() for k, v in model.state_dict().items()}
    blobs["0.weight_momentum"] = np.zeros(1)
    path = tmp_path / "caffe2.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)
    checkpointer = SafeDetectionCheckpointer(small_model())
    data = checkpointer._load_file(str(path))
    assert data["__author__"] == "Caffe2" and data["matching_heuristics"] is True
    assert "0.weight_momentum" not in data["model"] and set(data["model"]) == set(model.state_dict())
