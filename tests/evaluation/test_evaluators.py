"""PerImageIoUEvaluator (semantic) and InstancesToSemSegEvaluator (instances) on hand-made predictions."""

import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from detectron2.structures import Instances
from PIL import Image

from semseg_heads.evaluation import (
    InstancesToSemSegEvaluator,
    PerImageIoUEvaluator,
    all_background_scores,
    foreground_map,
    format_results_table,
    merge_instances,
)

H = W = 8


def gt_a():
    g = np.zeros((H, W), np.uint8)
    g[2:5, 2:5] = 1  # 9 chair pixels
    g[0, 0] = 255  # ignored
    return g


def gt_b():
    g = np.zeros((H, W), np.uint8)
    g[7, :3] = 1  # 3 chair pixels: not scored for IoU/Dice
    return g


@pytest.fixture
def semantic_dataset(tmp_path):
    name = "test_eval_semantic"
    records = []
    for i, label in enumerate([gt_a(), gt_b()]):
        img, lab = tmp_path / f"{i}.jpg", tmp_path / f"{i}.png"
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(img)
        Image.fromarray(label).save(lab)
        records.append({"file_name": str(img), "sem_seg_file_name": str(lab), "height": H, "width": W})
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        stuff_classes=["background", "chair"], ignore_label=255, evaluator_type="sem_seg"
    )
    yield name, records
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def scores_from_mask(pred: np.ndarray) -> torch.Tensor:
    """[2, H, W] logits whose argmax is ``pred``."""
    p = torch.from_numpy(pred.astype(np.float32))
    return torch.stack([1 - p, p])


def hand_predictions():
    pa = np.zeros((H, W), bool)
    pa[2:5, 3:6] = True  # 9 pixels, 6 shared with gt_a
    pa[0, 0] = True  # on the ignored pixel: must not count
    pb = np.zeros((H, W), bool)  # misses the 3 pixels of gt_b
    return pa, pb


def test_semantic_evaluator_by_hand(semantic_dataset, tmp_path):
    name, records = semantic_dataset
    ev = PerImageIoUEvaluator(name, distributed=False, output_dir=str(tmp_path / "out"))
    ev.reset()
    pa, pb = hand_predictions()
    inputs = [{"file_name": r["file_name"]} for r in records]
    ev.process(inputs, [{"sem_seg": scores_from_mask(pa)}, {"sem_seg": scores_from_mask(pb)}])
    res = ev.evaluate()["chair_segments"]
    # Image a: 63 valid pixels, inter 6, pred 9 (valid), gt 9 -> 3 fp + 3 fn wrong.
    # Image b: 64 valid, 3 fn wrong.  Prec. = (127 - 9) / 127.
    assert res["Prec"] == pytest.approx(100 * 118 / 127)
    # Only image a is scored: IoU 6 / 12, Dice 12 / 18.
    assert res["IoU"] == pytest.approx(100 * 6 / 12)
    assert res["Dice"] == pytest.approx(100 * 12 / 18)
    assert res["num_scored_images"] == 1
    dump = json.loads((tmp_path / "out" / "chair_segments_per_image.json").read_text())
    assert [img["intersection"] for img in dump["images"]] == [6, 0]
    # The per-image counts (the evaluator's own) add up to SemSegEvaluator's pixel accuracy.
    correct, total = (sum(img[k] for img in dump["images"]) for k in ("correct", "total"))
    assert 100 * correct / total == pytest.approx(res["Prec"])


def test_semantic_evaluator_is_semsegevaluator_plus_per_image_metrics(semantic_dataset):
    name, records = semantic_dataset
    ours = PerImageIoUEvaluator(name, distributed=False)
    d2 = SemSegEvaluator(name, distributed=False)
    pa, pb = hand_predictions()
    inputs = [{"file_name": r["file_name"]} for r in records]
    outputs = [{"sem_seg": scores_from_mask(pa)}, {"sem_seg": scores_from_mask(pb)}]
    for ev in (ours, d2):
        ev.reset()
        ev.process(inputs, outputs)
    both, d2_res = ours.evaluate(), d2.evaluate()["sem_seg"]
    assert both["sem_seg"] == pytest.approx(d2_res)  # Detectron2's own block, unchanged
    assert both["chair_segments"]["mIoU"] == pytest.approx(d2_res["mIoU"])
    assert both["chair_segments"]["Prec"] == pytest.approx(d2_res["pACC"])
    # Two-class mIoU by hand: chair tp 6, pred 9, gt 12 -> 6/15; background tp 112,
    # pred 118, gt 115 -> 112/121.
    assert d2_res["mIoU"] == pytest.approx(100 * (6 / 15 + 112 / 121) / 2)


def test_all_background_baseline(semantic_dataset):
    name, _ = semantic_dataset
    res = all_background_scores(name)
    # 127 valid pixels, 12 of them chair; the only scored image has IoU = Dice = 0.
    assert res["Prec"] == pytest.approx(100 * 115 / 127)
    assert res["IoU"] == 0.0 and res["Dice"] == 0.0
    # mIoU: background IoU 115/127, chair 0 (present in gt) -> halved.
    assert res["mIoU"] == pytest.approx(100 * (115 / 127) / 2)


def test_output_of_wrong_size_names_the_file(semantic_dataset):
    name, records = semantic_dataset
    ev = PerImageIoUEvaluator(name, distributed=False)
    ev.reset()
    with pytest.raises(ValueError, match=os.path.basename(records[0]["file_name"])):
        ev.process([{"file_name": records[0]["file_name"]}], [{"sem_seg": torch.zeros(2, H, W + 1)}])


def test_label_map_with_raw_mask_values_is_an_error(tmp_path):
    name = "test_eval_raw_mask"
    img, lab = tmp_path / "0.jpg", tmp_path / "0.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(img)
    raw = np.zeros((H, W), np.uint8)
    raw[1, 1] = 128  # an anti-aliased 0..255 mask, not class ids
    Image.fromarray(raw).save(lab)
    DatasetCatalog.register(name, lambda: [{"file_name": str(img), "sem_seg_file_name": str(lab)}])
    MetadataCatalog.get(name).set(stuff_classes=["background", "chair"], ignore_label=255)
    try:
        ev = PerImageIoUEvaluator(name, distributed=False)
        ev.reset()
        with pytest.raises(ValueError, match=r"0\.png.*\[128\]"):
            ev.process([{"file_name": str(img)}], [{"sem_seg": torch.zeros(2, H, W)}])
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def instances(masks, scores):
    inst = Instances((H, W))
    inst.pred_masks = torch.from_numpy(np.stack(masks))
    inst.scores = torch.tensor(scores)
    return inst


def test_merge_instances_keeps_confident_masks_only():
    m1, m2, m3 = (np.zeros((H, W), bool) for _ in range(3))
    m1[0, 0] = m2[1, 1] = m3[2, 2] = True
    merged = merge_instances(instances([m1, m2, m3], [0.9, 0.3, 0.5]), score_threshold=0.5)
    assert merged.sum() == 2 and merged[0, 0] and merged[2, 2] and not merged[1, 1]
    empty = merge_instances(instances([m1], [0.1]), score_threshold=0.5)
    assert empty.shape == (H, W) and not empty.any()


@pytest.mark.parametrize("background", [0, 1])  # stuff_classes in either order
def test_instance_predictions_scored_through_the_semantic_evaluator(tmp_path, background):
    name = "test_eval_instance"
    chair = np.zeros((H, W), np.uint8)
    chair[1:7, 1:3] = 1  # 12 pixels
    chair[5:7, 5:7] = 1  # a second chair of 4 pixels
    Image.fromarray(chair if background == 0 else 1 - chair).save(tmp_path / "a.png")
    rle = mask_util.encode(np.asfortranarray(chair))
    records = [
        {
            "file_name": str(tmp_path / "a.jpg"),
            "sem_seg_file_name": str(tmp_path / "a.png"),
            "image_id": 0,
            "height": H,
            "width": W,
            "annotations": [{"segmentation": rle, "bbox": [1, 1, 6, 6], "bbox_mode": 1, "category_id": 0}],
        }
    ]
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        thing_classes=["chair"],
        stuff_classes=["background", "chair"] if background == 0 else ["chair", "background"],
        ignore_label=255,
        evaluator_type="coco",
    )
    try:
        ev = InstancesToSemSegEvaluator(PerImageIoUEvaluator(name, distributed=False), score_threshold=0.5)
        ev.reset()
        pred = np.zeros((H, W), bool)
        pred[1:7, 1:4] = True  # 18 pixels covering the 12 of the first chair
        weak = np.zeros((H, W), bool)
        weak[5:7, 5:7] = True  # the second chair, found with too low a score: not counted
        out = {"instances": instances([pred, weak], [0.8, 0.3])}
        assert foreground_map(out, score_threshold=0.5).sum() == 18
        ev.process([{"file_name": records[0]["file_name"]}], [out])
        res = ev.evaluate()["chair_segments"]
        # gt = 12 + 4 = 16 pixels; inter 12; union 18 + 16 - 12 = 22; wrong = 6 fp + 4 fn.
        assert res["IoU"] == pytest.approx(100 * 12 / 22)
        assert res["Dice"] == pytest.approx(100 * 24 / 34)
        assert res["Prec"] == pytest.approx(100 * 54 / 64)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_results_table_has_the_paper_columns_and_miou():
    table = format_results_table(
        {
            "unet": {
                "sem_seg": {"mIoU": 80.0},
                "chair_segments": {"Prec": 97.0, "IoU": 85.0, "Dice": 91.0, "mIoU": 80.0},
            },
            "mask_rcnn": {
                "segm": {"AP": 40.0},
                "chair_segments": {"Prec": 95.0, "IoU": 80.0, "Dice": 88.0, "mIoU": 70.5},
            },
        }
    )
    header = table.splitlines()[0]
    for col in ("Prec.", "IoU", "Dice", "mIoU", "mask AP"):
        assert col in header
    assert "70.50" in table and "97.00" in table
