#!/usr/bin/env python
"""Check COCOEvaluator's mask AP on a Mask R-CNN checkpoint against an independent computation.

For each val image: the model's detections (through ``Trainer.build_test_loader``, the same
resize and ``SOLVER.AMP`` autocast as evaluation), their box and mask IoU with the one
ground-truth chair computed here with numpy, and pycocotools' own IoU matrix (``COCOeval.ious``)
for the same detections; any disagreement is printed. Also prints COCOEvaluator's AP, how
many top-scored detections reach mask / box IoU 0.5 and 0.75 (what AP50 / AP75 count), and
the mask AP of the same masks ranked by their true IoU instead of the model's scores (the most
a rescoring such as ``MODEL.ROI_MASK_HEAD.RESCORE_BY_MASKNESS`` could give).

``--perfect-mask-head N`` replaces the model by a perfect one at the config's input size: each
ground-truth box with the N x N mask ``mask_rcnn_loss`` would train on (Detectron2's
``DatasetMapper`` at ``INPUT.MIN_SIZE_TEST``, ``BitMasks.crop_and_resize``), pasted back by
``detector_postprocess``: the mask AP that Mask R-CNN's mask representation allows.

    python projects/ChairSegments/check_instance_eval.py \\
        --config-file configs/ChairSegments/recipes/mask_rcnn_R_18_FPN_cpu.yaml \\
        --weights output/model_0000099.pth --images 200 --json check.json [KEY VALUE ...]
    python projects/ChairSegments/check_instance_eval.py \
        --config-file configs/ChairSegments/recipes/mask_rcnn_R_18_FPN_cpu.yaml --perfect-mask-head 28
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import BoxMode
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from chairseg.instance_check import perfect_mask_head
from semseg_heads.amp import amp_settings, outputs_to_float32
from semseg_heads.checkpoint import SafeDetectionCheckpointer
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.engine import Trainer


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two XYXY boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", default=None, help="the checkpoint to check")
    p.add_argument("--perfect-mask-head", type=int, default=0, metavar="N", help="no model: see above")
    p.add_argument("--images", type=int, default=200, help="val images to check (from the first)")
    p.add_argument("--json", default=None, help="write per-image rows and the AP here")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    cfg = get_semseg_heads_cfg(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
    name = cfg.DATASETS.TEST[0]
    if not args.weights and not args.perfect_mask_head:
        p.error("give --weights (a checkpoint) or --perfect-mask-head N")
    model = Trainer.build_model(cfg).eval()
    if args.weights:
        SafeDetectionCheckpointer.for_inference(model, cfg).load(args.weights)
    amp = amp_settings(cfg)
    records = {r["image_id"]: r for r in DatasetCatalog.get(name)}
    tmp = tempfile.mkdtemp(prefix="check_instance_eval_")
    evaluator = COCOEvaluator(
        name, tasks=("bbox", "segm"), distributed=False, output_dir=tmp, use_fast_impl=False
    )
    evaluator.reset()
    rows = []
    with torch.no_grad():
        for k, inputs in enumerate(Trainer.build_test_loader(cfg, name)):
            if k >= args.images:
                break
            rec = records[inputs[0]["image_id"]]
            if args.perfect_mask_head:
                size = cfg.INPUT.MIN_SIZE_TEST
                outputs = [{"instances": perfect_mask_head(rec, size, args.perfect_mask_head)}]
            else:
                with amp.autocast():
                    outputs = outputs_to_float32(model(inputs))
            evaluator.process(inputs, outputs)
            if len(rec["annotations"]) != 1:
                raise SystemExit(f"{rec['file_name']}: expected one chair, found {len(rec['annotations'])}")
            ann = rec["annotations"][0]
            gt = mask_util.decode(ann["segmentation"]).astype(bool)
            gt_box = np.array(BoxMode.convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYXY_ABS))
            inst = outputs[0]["instances"]
            masks = inst.pred_masks.numpy().astype(bool)
            dets = [
                {
                    "score": float(s),
                    "box_iou": box_iou(b, gt_box),
                    "mask_iou": float((m & gt).sum() / max((m | gt).sum(), 1)),
                }
                for s, b, m in zip(inst.scores.numpy(), inst.pred_boxes.tensor.numpy(), masks)
            ]
            rows.append({"image_id": rec["image_id"], "gt_pixels": int(gt.sum()), "detections": dets})
    coco = evaluator.evaluate()

    # pycocotools' IoUs of the same detections, against ours.
    gt_api = COCO()
    gt_api.dataset = convert_to_coco_dict(name)
    gt_api.createIndex()
    preds = [dict(d, category_id=1) for p_ in evaluator._predictions for d in p_["instances"]]
    mismatches = 0
    if preds:
        ev = COCOeval(gt_api, gt_api.loadRes(preds), "segm")
        ev.params.imgIds = [r["image_id"] for r in rows]
        ev.evaluate()
        for r in rows:
            theirs = sorted(np.asarray(ev.ious[(r["image_id"], 1)]).ravel().tolist())
            ours = sorted(d["mask_iou"] for d in r["detections"])
            if len(theirs) != len(ours) or not np.allclose(ours, theirs, atol=1e-6):
                mismatches += 1
                print(f"MISMATCH image {r['image_id']}: ours {ours} pycocotools {theirs}")
    # The mask AP the same masks would score ranked by their true IoU with the chair instead of
    # by the model's scores: what any rescoring of these masks could gain at most.
    ranked_by_iou = None
    if preds:
        flat = [d for r in rows for d in r["detections"]]
        if len(flat) != len(preds):
            raise SystemExit(f"{len(preds)} predictions for {len(flat)} detections: the orders differ")
        oracle = [dict(p_, score=d["mask_iou"]) for p_, d in zip(preds, flat)]
        ev = COCOeval(gt_api, gt_api.loadRes(oracle), "segm")
        ev.params.imgIds = [r["image_id"] for r in rows]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        ranked_by_iou = float(ev.stats[0] * 100)
    top = [r["detections"][0] for r in rows if r["detections"]]
    summary = {
        "images": len(rows),
        "images_with_detections": len(top),
        "iou_mismatches_vs_pycocotools": mismatches,
        "top1_mask_iou_mean": float(np.mean([d["mask_iou"] for d in top])) if top else float("nan"),
        "top1_box_iou_mean": float(np.mean([d["box_iou"] for d in top])) if top else float("nan"),
        "top1_share_mask_iou_ge_0.5": float(np.mean([d["mask_iou"] >= 0.5 for d in top])) if top else 0.0,
        "top1_share_mask_iou_ge_0.75": float(np.mean([d["mask_iou"] >= 0.75 for d in top])) if top else 0.0,
        "top1_share_box_iou_ge_0.5": float(np.mean([d["box_iou"] >= 0.5 for d in top])) if top else 0.0,
        "top1_share_box_iou_ge_0.75": float(np.mean([d["box_iou"] >= 0.75 for d in top])) if top else 0.0,
        "coco": {k: dict(v) for k, v in coco.items()},
        "segm_AP_ranked_by_true_mask_iou": ranked_by_iou,
    }
    for r in rows[:5]:
        print(
            r["image_id"],
            r["gt_pixels"],
            [{k: round(v, 3) for k, v in d.items()} for d in r["detections"][:3]],
        )
    print(json.dumps(summary, indent=1))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
