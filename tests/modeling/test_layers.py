"""Initialisations and mechanisms the papers specify: bilinear upsampling (FCN), identity context
(Yu & Koltun), unpooling switches (DeconvNet), and the losses."""

from __future__ import annotations

import pytest
import torch
from modeling_utils import build
from torch.nn import functional as F

from semseg_heads.modeling.backbone.vgg import VGG16
from semseg_heads.modeling.layers import FixedBilinearUpsample, Grid, align_and_crop, bilinear_kernel
from semseg_heads.modeling.losses import SemSegLoss, border_weight_map, lovasz_softmax_loss, soft_dice_loss
from semseg_heads.modeling.meta_arch.dilated import ContextModule


def test_bilinear_kernel_values() -> None:
    ramp = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.equal(bilinear_kernel(4), ramp[:, None] * ramp[None, :])


def test_fcn_upsampling_is_bilinear_learnable_inside_fixed_at_the_end() -> None:
    model = build("fcn8s")
    head = model.sem_seg_head
    assert len(head.upscores) == 2  # pool4 and pool3 fusions
    for up in head.upscores:
        assert up.weight.requires_grad
        expected = torch.zeros_like(up.weight)
        for c in range(up.weight.shape[0]):
            expected[c, c] = bilinear_kernel(4)
        assert torch.equal(up.weight.detach(), expected)
    # The final 8x upsampling is a fixed buffer, neither trained nor saved.
    final = head.final_upsample
    assert final.factor == 8 and torch.equal(final.kernel[0, 0], bilinear_kernel(16))
    assert not any("final_upsample" in k for k in model.state_dict())
    assert not any("final_upsample" in n for n, _ in model.named_parameters())
    # FCN-32s owns no skip layers at all (nothing unused under DDP).
    head32 = build("fcn32s").sem_seg_head
    assert len(head32.upscores) == 0 and list(head32.scores) == ["fc7"]


def test_fixed_bilinear_upsampling_interpolates_linearly() -> None:
    up = FixedBilinearUpsample(4)
    ramp = torch.arange(6, dtype=torch.float32)[None, None, None, :].expand(1, 2, 6, 6)
    out = up(ramp)
    # Cells are centred at 4 * i + 1.5 of the output: a ramp of slope 1/4 in the interior.
    interior = out[0, :, 8:16, 6:18]
    assert torch.allclose(interior[..., 1:] - interior[..., :-1], torch.full_like(interior[..., 1:], 0.25))
    assert torch.allclose(up(torch.ones(1, 1, 3, 3))[0, 0, 4:12, 4:12], torch.ones(8, 8))


@pytest.mark.parametrize("kind", ["basic", "large"])
def test_context_module_starts_as_identity(kind: str) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)  # non-negative class maps: the ReLUs keep them
    exact = ContextModule(3, kind, noise_std=0.0)
    assert torch.allclose(exact(x), x, atol=1e-5)
    if kind == "basic":
        conv = exact.layers[0]
        assert torch.equal(conv.weight[:, :, 1, 1], torch.eye(3)) and conv.weight.abs().sum() == 3
        assert [layer.dilation[0] for layer in exact.layers] == [1, 1, 2, 4, 8, 16, 1]
    else:
        assert [layer.out_channels for layer in exact.layers] == [6, 6, 12, 24, 48, 96, 96]
        noisy = ContextModule(3, kind)  # the paper's small noise off the identity
        assert torch.allclose(noisy(x), x, atol=0.05)
        assert not torch.allclose(noisy(x), x, atol=1e-6)


def test_configured_context_module_is_identity_initialised() -> None:
    head = build("dilated_basic").sem_seg_head
    x = torch.rand(1, 2, 8, 8)
    assert torch.allclose(head.context(x), x, atol=1e-6)
    assert build("dilated_frontend").sem_seg_head.context is None


def test_unpooling_restores_values_at_the_switch_positions() -> None:
    torch.manual_seed(0)
    backbone = VGG16(
        widths=(4, 8, 8, 8, 8),
        fc_width=8,
        norm="BN",
        record_switches=True,
        out_features=("conv1", "pool1", "conv2", "pool2"),
    )
    backbone.eval()
    with torch.no_grad():
        feats = backbone(torch.randn(2, 3, 32, 32))
    for stage in (1, 2):
        conv, pool, switches = feats[f"conv{stage}"], feats[f"pool{stage}"], feats[f"pool{stage}_switches"]
        unpooled = F.max_unpool2d(pool, switches, kernel_size=2, stride=2)  # as DeconvNetHead does
        assert unpooled.shape == conv.shape
        positions = torch.zeros_like(conv, dtype=torch.bool).flatten(2)
        positions.scatter_(2, switches.flatten(2), True)
        positions = positions.view_as(conv)
        # Exactly one position per 2x2 window, holding that window's maximum...
        assert torch.equal(F.avg_pool2d(positions.float(), 2) * 4, torch.ones_like(pool))
        assert torch.equal(unpooled[positions], conv[positions])
        assert torch.equal(F.max_pool2d(unpooled, 2), F.max_pool2d(conv, 2))
        # ...and zero everywhere else.
        assert not unpooled[~positions].any()


def test_align_and_crop_rejects_fractional_offsets() -> None:
    a, b = torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="fraction of a cell"):
        align_and_crop(a, Grid(8, 0.0), b, Grid(8, 4.0))
    a2, b2, grid = align_and_crop(a, Grid(8, -8.0), b, Grid(8, 0.0))
    assert a2.shape == b2.shape == (1, 1, 4, 4) and grid.offset == 0.0


def test_losses() -> None:
    targets = torch.tensor([[[0, 1], [1, 255]]])
    perfect = F.one_hot(targets.clamp(max=1), 2).permute(0, 3, 1, 2).float() * 50
    assert soft_dice_loss(perfect, targets, 255) < 1e-3
    assert soft_dice_loss(-perfect, targets, 255) > 0.7  # all wrong: only the smoothing term left
    both = SemSegLoss(num_classes=2, loss_type="cross_entropy+dice")(perfect, targets)
    assert set(both) == {"loss_sem_seg", "loss_dice"} and all(v < 1e-3 for v in both.values())
    # Ignored pixels do not count, however wrong.
    wrong_ignored = perfect.clone()
    wrong_ignored[0, :, 1, 1] = torch.tensor([50.0, -50.0])
    assert SemSegLoss(num_classes=2)(wrong_ignored, targets)["loss_sem_seg"] < 1e-3
    # Class weights change cross-entropy; logits larger than the target are cropped from (0, 0).
    logits = torch.randn(1, 2, 3, 3)
    plain = SemSegLoss(num_classes=2)(logits, targets)["loss_sem_seg"]
    weighted = SemSegLoss(num_classes=2, class_weights=(1.0, 3.0))(logits, targets)["loss_sem_seg"]
    assert not torch.isclose(plain, weighted)
    assert torch.isclose(plain, F.cross_entropy(logits[..., :2, :2], targets, ignore_index=255))
    # All pixels ignored: zero, not NaN.
    all_ignored = SemSegLoss(num_classes=2)(logits, torch.full((1, 2, 2), 255))
    assert all_ignored["loss_sem_seg"].item() == 0.0
    with pytest.raises(ValueError, match="do not cover"):
        SemSegLoss(num_classes=2)(torch.zeros(1, 2, 1, 1), targets)


def test_dice_per_image_averages_images_not_pixels() -> None:
    # Image 0: a 1-pixel object, predicted as background; image 1: a 15-pixel object, predicted
    # right. Pooled, the batch's object Dice is high; per image, the missed object counts half.
    targets = torch.zeros(2, 4, 4, dtype=torch.long)
    targets[0, 0, 0] = 1
    targets[1, :, :] = 1
    targets[1, 3, 3] = 0
    logits = F.one_hot(targets, 2).permute(0, 3, 1, 2).float() * 50
    logits[0, :, 0, 0] = torch.tensor([50.0, -50.0])

    def dice(inter: float, card: float) -> float:
        return (2 * inter + 1) / (card + 1)

    # Background: image 0 predicts 16 pixels for 15; image 1 predicts 1 pixel for 1.
    pooled = 1 - (dice(16, 17 + 16) + dice(15, 15 + 16)) / 2
    per_image = 1 - ((dice(15, 31) + dice(1, 2)) / 2 + (dice(0, 1) + dice(15, 30)) / 2) / 2
    assert torch.isclose(soft_dice_loss(logits, targets, 255), torch.tensor(pooled), atol=1e-4)
    got = soft_dice_loss(logits, targets, 255, per_image=True)
    assert torch.isclose(got, torch.tensor(per_image), atol=1e-4)
    assert got > soft_dice_loss(logits, targets, 255)
    loss = SemSegLoss(num_classes=2, loss_type="dice", dice_per_image=True)(logits, targets)["loss_dice"]
    assert torch.isclose(loss, got)


def test_border_weight_map_follows_the_distance_to_the_nearest_border() -> None:
    # A one-pixel line of class 1 in column 4: columns 3-5 touch a border (d = 0), then d grows
    # by one a column; an ignored pixel is no border and keeps its neighbours' weights.
    targets = torch.zeros(1, 9, 9, dtype=torch.long)
    targets[0, :, 4] = 1
    targets[0, 8, 0] = 255
    weights = border_weight_map(targets, 255, weight=10.0, sigma=1.0)
    d = torch.tensor([3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    expected = 1 + 10 * torch.exp(-(d**2) / 2) * (d <= 3)
    torch.testing.assert_close(weights[0], expected.expand(9, 9))
    uniform = torch.ones(1, 5, 5, dtype=torch.long)
    assert torch.equal(border_weight_map(uniform, 255, 10.0, 1.0), torch.ones(1, 5, 5))
    with pytest.raises(ValueError, match="BORDER_SIGMA"):
        SemSegLoss(num_classes=2, border_weight=1.0, border_sigma=0.0)


def test_border_weighted_cross_entropy_is_the_weighted_mean_over_labelled_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 2, (2, 6, 6), generator=g)
    targets[1, 0] = 255
    logits = torch.randn(2, 2, 6, 6, generator=g)
    loss = SemSegLoss(num_classes=2, border_weight=5.0, border_sigma=1.5)(logits, targets)["loss_sem_seg"]
    weights = border_weight_map(targets, 255, 5.0, 1.5) * (targets != 255)
    per_pixel = F.cross_entropy(logits, targets, ignore_index=255, reduction="none")
    torch.testing.assert_close(loss, (per_pixel * weights).sum() / weights.sum())
    # The class weights multiply the border weights, once.
    classes = torch.tensor([1.0, 3.0])
    both = SemSegLoss(num_classes=2, class_weights=(1.0, 3.0), border_weight=5.0, border_sigma=1.5)
    pixel_classes = classes[torch.where(targets == 255, 0, targets)]
    torch.testing.assert_close(
        both(logits, targets)["loss_sem_seg"],
        (per_pixel * weights * pixel_classes).sum() / (weights * pixel_classes).sum(),
    )
    plain = SemSegLoss(num_classes=2)(logits, targets)["loss_sem_seg"]
    off = SemSegLoss(num_classes=2, border_weight=0.0)(logits, targets)["loss_sem_seg"]
    assert torch.equal(plain, off) and not torch.isclose(loss, plain)


def _jaccard_loss(
    pred: torch.Tensor, targets: torch.Tensor, classes: range, ignore: int = 255
) -> torch.Tensor:
    keep = targets != ignore
    terms = []
    for c in classes:
        p, t = (pred == c) & keep, (targets == c) & keep
        if t.any():
            terms.append(1 - (p & t).sum() / (p | t).sum())
    return torch.stack(terms).mean()


def test_lovasz_softmax_equals_the_jaccard_loss_at_hard_predictions() -> None:
    """Berman et al.'s Lovász extension is exact at the cube's vertices: for one-hot
    probabilities the loss is 1 - IoU averaged over the classes present, per image or pooled;
    ignored pixels take no part, an image with none labelled is left out of the mean."""
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 3, (3, 6, 6), generator=g)
    targets[0, :2] = 255
    targets[2] = 255
    pred = torch.randint(0, 3, (3, 6, 6), generator=g)
    logits = F.one_hot(pred, 3).permute(0, 3, 1, 2).float() * 60
    per_image = torch.stack([_jaccard_loss(pred[i], targets[i], range(3)) for i in range(2)]).mean()
    got = lovasz_softmax_loss(logits, targets, 255, per_image=True)
    torch.testing.assert_close(got, per_image)
    torch.testing.assert_close(
        lovasz_softmax_loss(logits, targets, 255), _jaccard_loss(pred, targets, range(3))
    )
    loss = SemSegLoss(num_classes=3, loss_type="cross_entropy+lovasz", dice_per_image=True)(logits, targets)
    assert set(loss) == {"loss_sem_seg", "loss_lovasz"}
    torch.testing.assert_close(loss["loss_lovasz"], got)
    all_ignored = SemSegLoss(num_classes=3, loss_type="lovasz")(logits, torch.full((3, 6, 6), 255))
    assert all_ignored["loss_lovasz"].item() == 0.0


def test_lovasz_softmax_gradient_lowers_the_loss() -> None:
    targets = torch.zeros(2, 8, 8, dtype=torch.long)
    targets[:, 2:5, 3:6] = 1
    logits = torch.zeros(2, 2, 8, 8, requires_grad=True)
    first = lovasz_softmax_loss(logits, targets, 255, per_image=True)
    first.backward()
    with torch.no_grad():
        stepped = logits - 5.0 * logits.grad
    assert lovasz_softmax_loss(stepped, targets, 255, per_image=True) < first
