"""ModelEMA (semseg_heads.model_ema): the average by hand, buffers, swapping in and out,
checkpoint state, and loading the averaged weights for inference."""

import pytest
import torch
from torch import nn

from semseg_heads.checkpoint import SafeDetectionCheckpointer
from semseg_heads.model_ema import ModelEMA


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_average_by_hand_with_the_warm_up():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ModelEMA(model, decay=0.5)
    expected = 0.0
    for n, value in enumerate([1.0, 2.0, 4.0, 4.0]):
        with torch.no_grad():
            model.weight.fill_(value)
        d = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18..., then the decay itself
        expected = d * expected + (1 - d) * value
        ema.update(model)
        assert ema.state["weight"].item() == pytest.approx(expected)
    assert ema.num_updates == 4


def test_running_statistics_averaged_and_integer_buffers_copied():
    model = small_model()
    ema = ModelEMA(model, decay=0.9)
    ema.num_updates = 100  # past the warm-up: the plain decay
    model.train()
    model(torch.randn(2, 3, 8, 8))
    before = ema.state["1.running_mean"].clone()
    ema.update(model)
    assert torch.allclose(ema.state["1.running_mean"], 0.9 * before + 0.1 * model[1].running_mean)
    assert ema.state["1.num_batches_tracked"].item() == 1


def test_applied_to_swaps_the_weights_in_and_back_even_after_an_error():
    model = small_model()
    ema = ModelEMA(model)
    ema.state["0.weight"].fill_(3.0)
    own = model[0].weight.detach().clone()
    with ema.applied_to(model) as m:
        assert m is model and torch.all(model[0].weight == 3.0)
    assert torch.equal(model[0].weight, own)
    with pytest.raises(RuntimeError, match="boom"), ema.applied_to(model):
        raise RuntimeError("boom")
    assert torch.equal(model[0].weight, own)


def test_channels_last_weights_stay_channels_last():
    model = small_model().to(memory_format=torch.channels_last)
    ema = ModelEMA(model)
    ema.update(model)
    assert ema.state["0.weight"].is_contiguous(memory_format=torch.channels_last)
    with ema.applied_to(model):
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_state_dict_round_trip_and_another_model_refused():
    model = small_model()
    ema = ModelEMA(model, decay=0.99)
    ema.update(model)
    ema.state["0.bias"].fill_(7.0)
    other = ModelEMA(small_model(), decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1 and torch.all(other.state["0.bias"] == 7.0)
    with pytest.raises(KeyError, match="another model"):
        ModelEMA(nn.Linear(2, 2)).load_state_dict(ema.state_dict())


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_decay_out_of_range_names_the_key(decay):
    with pytest.raises(ValueError, match="MODEL_EMA.DECAY"):
        ModelEMA(small_model(), decay=decay)


def test_checkpoint_loads_the_average_only_when_asked(tmp_path):
    model = small_model()
    ema = ModelEMA(model)
    ema.state["0.weight"].fill_(5.0)
    SafeDetectionCheckpointer(model, str(tmp_path), model_ema=ema).save("run")
    path = str(tmp_path / "run.pth")

    plain = small_model()
    with torch.no_grad():
        plain[0].weight.zero_()
    SafeDetectionCheckpointer(plain).load(path)
    assert torch.equal(plain[0].weight, model[0].weight)

    averaged = small_model()
    SafeDetectionCheckpointer(averaged, ema_weights=True).load(path)
    assert torch.all(averaged[0].weight == 5.0)
    # A checkpoint without an average loads its weights with ema_weights too.
    SafeDetectionCheckpointer(model, str(tmp_path)).save("plain")
    SafeDetectionCheckpointer(averaged, ema_weights=True).load(str(tmp_path / "plain.pth"))
    assert torch.equal(averaged[0].weight, model[0].weight)
