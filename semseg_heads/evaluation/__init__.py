"""Evaluators: the Chair Segments paper's per-image metrics for any binary dataset, beside
Detectron2's own, and the adapter that scores instance models by them."""

from semseg_heads.evaluation.chair_segments import (
    InstancesToSemSegEvaluator,
    PerImageIoUEvaluator,
    all_background_scores,
    background_id,
    foreground_map,
    ground_truth_mask,
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
    "ImageCounts",
    "InstancesToSemSegEvaluator",
    "MIN_OBJECT_PIXELS",
    "PerImageIoUEvaluator",
    "TABLE_COLUMNS",
    "all_background_scores",
    "background_id",
    "count_pixels",
    "foreground_map",
    "format_results_table",
    "ground_truth_mask",
    "merge_instances",
    "read_label_map",
    "table_row",
]
