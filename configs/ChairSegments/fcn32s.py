"""FCN-32s, VGG16: the LazyConfig twin of fcn32s.yaml (same model, data and recipe).

python tools/lazyconfig_train_net.py --config-file configs/ChairSegments/fcn32s.py
"""

from ..common.data.chair_segments import dataloader
from ..common.models.fcn_vgg16 import model
from ..common.optim import SGD as _SGD
from ..common.schedule import constant_with_warmup
from ..common.train import train

model.sem_seg_head.input_shape.out_features = ["fc7"]  # MODEL.FCN.OUTPUT_STRIDE 32

# Reference FCN-VGG16 recipe: SGD, lr 1e-4, 50 epochs; ImageNet VGG16 start (Sec. 3.1).
optimizer = _SGD
optimizer.lr = 0.0001
optimizer.weight_decay = 0.0005
train.max_iter = 250000
train.init_checkpoint = "torchvision://vgg16"
lr_multiplier = constant_with_warmup(train.max_iter)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
