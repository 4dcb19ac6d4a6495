"""The recipe of ``configs/ChairSegments/scratch/Base-Scratch.yaml`` (see its comments for
why): AdamW at 1e-3 with decoupled weight decay 1e-4, linear warm-up over 200 iterations from
0.01 and a cosine decay to 0 at 100,000 iterations; chair pixels weigh 3x in the loss. The
scratch/*.py files also put BN after every encoder / decoder conv (the model's ``norm``
arguments) and start from random weights (``train.init_checkpoint = ""``)."""

from .optim import AdamW as optimizer
from .schedule import cosine_with_warmup

optimizer.lr = 0.001
optimizer.weight_decay = 0.0001

max_iter = 100000
lr_multiplier = cosine_with_warmup(max_iter, warmup_iters=200, warmup_factor=0.01)

# MODEL.SEMSEG_HEADS.CLASS_WEIGHTS: background, chair.
class_weights = [1.0, 3.0]
