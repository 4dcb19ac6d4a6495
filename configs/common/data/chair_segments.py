"""Chair Segments at 64x64 (``DATASETS`` / ``INPUT`` of ``configs/Base-SemSeg.yaml``).

Detectron2's ``DatasetMapper`` reads ``sem_seg_file_name``; the evaluator is the one
``tools/train_net.py`` picks for Chair Segments (``SemSegEvaluator`` plus the paper's
per-image IoU / Dice). The builtin names register at ``import semseg_heads`` and read
``$DETECTRON2_DATASETS/ChairSegments``.
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from omegaconf import OmegaConf

from semseg_heads.evaluation import PerImageIoUEvaluator

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="chair_segments_64_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        # Keep the dataset's 64x64 (INPUT.MIN_SIZE_TRAIN (64,), MAX_SIZE_TRAIN 64) and
        # Detectron2's default horizontal flip (INPUT.RANDOM_FLIP).
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(64,), max_size=64, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
    ),
    total_batch_size=10,  # SOLVER.IMS_PER_BATCH
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="chair_segments_64_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=64, max_size=64)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

dataloader.evaluator = L(PerImageIoUEvaluator)(dataset_name="${..test.dataset.names}")
