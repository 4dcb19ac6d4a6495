"""The dilated network's staged training (Yu & Koltun, Sec. 5): a context network started from a
trained front-end with MODEL.DILATED.FREEZE_FRONTEND trains its context module and nothing else."""

from __future__ import annotations

import pytest
import torch
from modeling_utils import build, rectangles_batch

from semseg_heads.checkpoint import SafeDetectionCheckpointer


def _train_steps(model: torch.nn.Module, steps: int = 3) -> None:
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    batch = rectangles_batch(2)
    for _ in range(steps):
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_frozen_frontend_trains_only_the_context_module(tmp_path) -> None:
    frontend = build("dilated_frontend", seed=1)
    _train_steps(frontend)  # BN statistics and weights away from their initial values
    torch.save({"model": frontend.state_dict()}, tmp_path / "frontend.pth")

    staged = build("dilated_basic", 0.0625, "MODEL.DILATED.FREEZE_FRONTEND", True)
    SafeDetectionCheckpointer(staged).load(str(tmp_path / "frontend.pth"))
    trainable = {n for n, p in staged.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("sem_seg_head.context.") for n in trainable)

    loaded = {k: v.clone() for k, v in staged.state_dict().items()}
    for name, value in frontend.state_dict().items():
        if "num_batches_tracked" not in name:  # FrozenBatchNorm2d keeps no counter
            assert torch.equal(loaded[name], value), name
    _train_steps(staged)
    after = staged.state_dict()
    changed = {k for k in loaded if not torch.equal(loaded[k], after[k])}
    assert changed and all(k.startswith("sem_seg_head.context.") for k in changed), sorted(changed)


def test_frozen_frontend_needs_a_context_module() -> None:
    with pytest.raises(ValueError, match="MODEL.DILATED.CONTEXT is 'none'"):
        build("dilated_frontend", 0.0625, "MODEL.DILATED.FREEZE_FRONTEND", True)
