"""What ``configs/Base-SemSeg.yaml`` sets for every semantic model, as LazyConfig pieces.

Imported under underscore names by the model files, so they are no keys of a loaded config.
"""

# RGB normalised as torchvision's ImageNet models expect (MODEL.PIXEL_MEAN / PIXEL_STD).
pixel = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])

# The arguments every head passes to SemSegLoss (MODEL.SEM_SEG_HEAD.* / MODEL.SEMSEG_HEADS.*).
loss = dict(
    num_classes=2,
    ignore_value=255,
    loss_type="cross_entropy",
    class_weights=[],
    loss_weight=1.0,
)
