"""The optimizers of the yacs recipes (``SOLVER.OPTIMIZER``), as Detectron2's ``common/optim.py``
writes them: ``params.model`` is set to the model before instantiating (lazyconfig_train_net)."""

import torch
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.solver.build import get_default_optimizer_params

# Detectron2's own (model zoo ``common/optim.py``): weight_decay_norm 0.0 as SOLVER.WEIGHT_DECAY_NORM,
# momentum 0.9 as Base-SemSeg.yaml; each model sets lr and weight decay.
SGD = get_config("common/optim.py").SGD

# Not in Detectron2 v0.6's common/optim.py (its main has AdamW): the same form.
Adam = L(torch.optim.Adam)(
    params=L(get_default_optimizer_params)(base_lr="${..lr}", weight_decay_norm=0.0),
    lr=0.001,
    weight_decay=0.0,
)

AdamW = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(base_lr="${..lr}", weight_decay_norm=0.0),
    lr=0.001,
    weight_decay=0.0001,
)
