"""Evaluators: the Chair Segments paper metrics beside Detectron2's own."""

from semseg_heads.evaluation.chair_segments import (
    ChairSegmentsEvaluator,
    ChairSegmentsInstanceEvaluator,
    all_background_scores,
    annotations_to_mask,
    background_id,
    merge_instances,
    read_label_map,
)
from semseg_heads.evaluation.paper_metrics import (
    MIN_OBJECT_PIXELS,
    BinarySegmentationScores,
    ImageCounts,
    count_pixels,
)
from semseg_heads.evaluation.table import TABLE_COLUMNS, format_results_table, table_row

__all__ = [
    "BinarySegmentationScores",
    "TABLE_COLUMNS",
    "format_results_table",
    "table_row",
    "ChairSegmentsEvaluator",
    "ChairSegmentsInstanceEvaluator",
    "ImageCounts",
    "MIN_OBJECT_PIXELS",
    "all_background_scores",
    "annotations_to_mask",
    "background_id",
    "count_pixels",
    "merge_instances",
    "read_label_map",
]
