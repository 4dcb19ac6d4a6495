"""Detectron2's ``common/train.py`` (from its model zoo) with the periods of Base-SemSeg.yaml."""

from detectron2.model_zoo import get_config

train = get_config("common/train.py").train
train.checkpointer.period = 5000  # SOLVER.CHECKPOINT_PERIOD
train.eval_period = 5000  # TEST.EVAL_PERIOD
