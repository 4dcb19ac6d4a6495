"""projects/ChairSegments/weight_averages.py: bias-corrected EMAs and tail means of the weights."""

from __future__ import annotations

import pytest
import torch
from study_helpers import load_project_script
from torch import nn


@pytest.fixture(scope="module")
def wa():
    return load_project_script("weight_averages")


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))


def _set_weights(model: nn.Module, value: float, count: int) -> None:
    """Every floating-point entry ``value + its index``; integer buffers ``count``."""
    with torch.no_grad():
        for i, p in enumerate(model.state_dict().values()):
            if p.is_floating_point():
                p.fill_(value + i)
            else:
                p.fill_(count)


def test_parse_specs(wa):
    assert wa.AverageSpec.parse("ema:0.999") == wa.AverageSpec("ema", 0.999)
    assert wa.AverageSpec.parse("tail:4000").name == "tail4000"
    for bad in ("ema:1", "ema:0", "tail:-1", "tail:2.5", "swa:3", "ema"):
        with pytest.raises(ValueError, match="ema:D"):
            wa.AverageSpec.parse(bad)


def test_averages_are_the_weighted_means_of_the_steps(wa):
    model = _model()
    specs = [wa.AverageSpec("ema", 0.9), wa.AverageSpec("tail", 3)]
    averages = wa.WeightAverages(model, specs)
    values = [float(it * it) for it in range(6)]
    for it, value in enumerate(values):
        _set_weights(model, value, it)
        averages.update(model, it)
    key = "0.weight"
    ws = torch.tensor(values, dtype=torch.float64)  # entry 0 of the state dict: value + 0
    decays = 0.9 ** torch.arange(5, -1, -1, dtype=torch.float64)
    ema = (decays * ws).sum() / decays.sum()
    got = averages.averaged_state(model, "ema0.9")
    assert got[key].flatten()[0].item() == pytest.approx(ema.item(), rel=1e-5)
    assert averages.averaged_state(model, "tail3")[key].flatten()[0].item() == pytest.approx(
        ws[3:].mean().item()
    )
    # Integer buffers are the model's own; the model's weights are untouched.
    assert got["1.num_batches_tracked"].item() == 5
    assert model.state_dict()[key].flatten()[0].item() == ws[-1].item()


def test_tail_before_its_start_is_an_error(wa):
    model = _model()
    averages = wa.WeightAverages(model, [wa.AverageSpec("tail", 10)])
    averages.update(model, 3)
    with pytest.raises(ValueError, match="tail10"):
        averages.averaged_state(model, "tail10")


def test_state_round_trip_and_mismatch(wa):
    model = _model()
    a = wa.WeightAverages(model, [wa.AverageSpec("ema", 0.99)])
    _set_weights(model, 2.0, 1)
    a.update(model, 0)
    b = wa.WeightAverages(_model(), [wa.AverageSpec("ema", 0.99)])
    b.load_state_dict(a.state_dict())
    assert b.weight == a.weight
    assert torch.equal(b.avg["ema0.99"]["0.weight"], a.avg["ema0.99"]["0.weight"])
    c = wa.WeightAverages(_model(), [wa.AverageSpec("ema", 0.999)])
    with pytest.raises(KeyError, match="same --averages"):
        c.load_state_dict(a.state_dict())
