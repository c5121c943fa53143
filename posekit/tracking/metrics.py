"""Tracking accuracy: CLEAR-MOT (MOTA, ID switches, fragmentation) and IDF1 through motmetrics,
and HOTA (Luiten et al., IJCV 2021).

HOTA is implemented here in numpy, following TrackEval's `metrics/hota.py` (the reference code
of the paper) step by step: the `trackeval` package on PyPI declares opencv-python (which clashes
with the opencv-python-headless posekit needs, and needs libGL) and matplotlib as requirements.
tests/test_track_metrics.py checks it against values worked out by hand.

A sequence is a dict {frame index: Poses with track_ids}; frames missing from the prediction
count as frames where nothing was predicted. Detections are matched by box IoU or by keypoint OKS.
"""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from posekit.ops.boxes import box_iou
from posekit.ops.oks import oks
from posekit.structures import Poses

logger = logging.getLogger(__name__)

MATCHES = ("iou", "oks")
HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)  # 0.05, 0.10, ..., 0.95 as in TrackEval
_EPS = np.finfo(float).eps


def similarity(gt: Poses, pred: Poses, match: str = "iou") -> np.ndarray:
    """(G, P) similarity in [0, 1]: box IoU, or OKS with the ground truth's visible keypoints and
    0.53 x its box area as the object area (COCO's ratio of segment to box area)."""
    if match == "iou":
        return box_iou(gt.boxes, pred.boxes).astype(np.float64)
    if match == "oks":
        wh = np.clip(gt.boxes[:, 2:] - gt.boxes[:, :2], 0, None)
        areas = wh.prod(-1) * 0.53
        return oks(pred.keypoints, gt.keypoints, areas, gt.keypoint_scores > 0).T.astype(np.float64)
    raise ValueError(f"expected match 'iou' or 'oks', got {match!r}")


def _ids(poses: Poses, what: str, frame: int) -> np.ndarray:
    if poses.track_ids is None:
        raise ValueError(f"{what} frame {frame} has poses without track ids")
    ids = poses.track_ids
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{what} frame {frame} repeats a track id: {sorted(ids.tolist())}")
    return ids


def _frames(gt: Mapping[int, Poses], pred: Mapping[int, Poses], match: str):
    """Yield (frame, gt ids, pred ids, similarity) over the ground truth's frames, in order."""
    extra = sorted(set(pred) - set(gt))
    if extra:
        logger.warning("%d predicted frames have no ground truth and are not scored (first: %d)",
                       len(extra), extra[0])
    for frame in sorted(gt):
        g = gt[frame]
        p = pred.get(frame)
        if p is None:
            p = Poses.empty(g.num_keypoints, tracked=True)
        yield frame, _ids(g, "ground-truth", frame), _ids(p, "predicted", frame), similarity(g, p, match)


def hota(frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """HOTA, DetA, AssA, DetRe, DetPr, AssRe, AssPr, LocA averaged over alpha = 0.05 .. 0.95.

    frames: per frame (gt ids (G,), pred ids (P,), similarity (G, P) in [0, 1]).
    """
    from posekit.extras import require

    linear_sum_assignment = require("scipy.optimize", "HOTA").linear_sum_assignment  # TrackEval's solver
    alphas = HOTA_ALPHAS
    n = len(alphas)
    tp, fn, fp, loc = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    num_gt = sum(len(g) for g, _, _ in frames)
    num_pred = sum(len(p) for _, p, _ in frames)
    if num_gt == 0 or num_pred == 0:
        # Nothing can match: HOTA is 0 (and LocA 1 by TrackEval's convention).
        det_re = 0.0
        return {"HOTA": 0.0, "DetA": 0.0, "AssA": 0.0, "DetRe": det_re, "DetPr": 0.0, "AssRe": 0.0,
                "AssPr": 0.0, "LocA": 1.0, "HOTA_TP": 0, "HOTA_FN": num_gt, "HOTA_FP": num_pred}

    # Dense ids: TrackEval relabels every sequence's ids to 0..n-1 before scoring.
    gt_labels = np.unique(np.concatenate([g for g, _, _ in frames]))
    pred_labels = np.unique(np.concatenate([p for _, p, _ in frames]))
    dense = [(np.searchsorted(gt_labels, g), np.searchsorted(pred_labels, p), s) for g, p, s in frames]

    # Global alignment between every gt id and pred id: a soft count of co-occurrences, each
    # weighted by the pair's share of its frame's similarity.
    potential = np.zeros((len(gt_labels), len(pred_labels)))
    gt_count = np.zeros((len(gt_labels), 1))
    pred_count = np.zeros((1, len(pred_labels)))
    for g, p, sim in dense:
        denom = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        sim_iou = np.zeros_like(sim)
        mask = denom > _EPS
        sim_iou[mask] = sim[mask] / denom[mask]
        potential[g[:, None], p[None, :]] += sim_iou
        gt_count[g] += 1
        pred_count[0, p] += 1
    alignment = potential / (gt_count + pred_count - potential)

    match_counts = np.zeros((n, len(gt_labels), len(pred_labels)))
    for g, p, sim in dense:
        if len(g) == 0:
            fp += len(p)
            continue
        if len(p) == 0:
            fn += len(g)
            continue
        rows, cols = linear_sum_assignment(-(alignment[g[:, None], p[None, :]] * sim))
        matched_sim = sim[rows, cols]
        for a, alpha in enumerate(alphas):
            ok = matched_sim >= alpha - _EPS
            k = int(ok.sum())
            tp[a] += k
            fn[a] += len(g) - k
            fp[a] += len(p) - k
            if k:
                loc[a] += matched_sim[ok].sum()
                match_counts[a, g[rows[ok]], p[cols[ok]]] += 1

    ass_a, ass_re, ass_pr = np.zeros(n), np.zeros(n), np.zeros(n)
    for a in range(n):
        m = match_counts[a]
        ass_a[a] = (m * (m / np.maximum(1, gt_count + pred_count - m))).sum() / max(1.0, tp[a])
        ass_re[a] = (m * (m / np.maximum(1, gt_count))).sum() / max(1.0, tp[a])
        ass_pr[a] = (m * (m / np.maximum(1, pred_count))).sum() / max(1.0, tp[a])
    loc_a = np.maximum(1e-10, loc) / np.maximum(1e-10, tp)
    det_re = tp / np.maximum(1, tp + fn)
    det_pr = tp / np.maximum(1, tp + fp)
    det_a = tp / np.maximum(1, tp + fn + fp)
    hota_a = np.sqrt(det_a * ass_a)
    return {"HOTA": float(hota_a.mean()), "DetA": float(det_a.mean()), "AssA": float(ass_a.mean()),
            "DetRe": float(det_re.mean()), "DetPr": float(det_pr.mean()), "AssRe": float(ass_re.mean()),
            "AssPr": float(ass_pr.mean()), "LocA": float(loc_a.mean()),
            "HOTA_TP": int(tp[0]), "HOTA_FN": int(fn[0]), "HOTA_FP": int(fp[0])}


def evaluate_tracking(gt: Mapping[int, Poses], pred: Mapping[int, Poses], *, match: str = "iou",
                      threshold: float = 0.5) -> dict[str, float]:
    """Score a tracked sequence against ground truth.

    gt, pred:  {frame index: Poses with track_ids}; scored over the ground truth's frames
    match:     "iou" (box IoU) or "oks" (keypoint OKS) decides which detections correspond
    threshold: the least similarity of a CLEAR-MOT/IDF1 match (HOTA sweeps its own thresholds)
    returns    MOTA, MOTP (mean similarity of matches), IDF1, IDP, IDR, ID switches,
               fragmentations, precision, recall, counts, and the HOTA family
    """
    from posekit.extras import require

    mm = require("motmetrics", "tracking metrics")

    if match not in MATCHES:
        raise ValueError(f"expected match 'iou' or 'oks', got {match!r}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"expected a match threshold in (0, 1], got {threshold}")
    if not any(len(p) for p in gt.values()):
        raise ValueError("the ground truth holds no person: MOTA, IDF1 and HOTA are undefined")
    # motmetrics takes the first assignment solver it finds installed (lap before scipy); scipy is
    # always there, so the scores (ties included) do not depend on what else is installed.
    with mm.lap.set_default_solver("scipy"):
        acc = mm.MOTAccumulator(auto_id=False)
        per_frame = []
        for frame, g, p, sim in _frames(gt, pred, match):
            dist = np.where(sim >= threshold, 1.0 - sim, np.nan)
            acc.update(g.tolist(), p.tolist(), dist, frameid=frame)
            per_frame.append((g, p, sim))
    names = {"mota": "MOTA", "motp": "MOTP", "idf1": "IDF1", "idp": "IDP", "idr": "IDR",
             "num_switches": "IDSW", "num_fragmentations": "Frag", "precision": "precision",
             "recall": "recall", "num_false_positives": "FP", "num_misses": "FN", "num_objects": "GT",
             "num_predictions": "predictions", "num_unique_objects": "GT_tracks",
             "mostly_tracked": "MT", "mostly_lost": "ML", "num_frames": "frames"}
    with mm.lap.set_default_solver("scipy"):  # IDF1 solves a global assignment too
        summary = mm.metrics.create().compute(acc, metrics=list(names), name="sequence")
    out: dict[str, float] = {}
    for key, name in names.items():
        value = summary[key].iloc[0]
        if name == "MOTP":  # motmetrics reports the mean distance; say it as similarity
            value = 1.0 - value if np.isfinite(value) else float("nan")
        out[name] = int(value) if name in ("IDSW", "Frag", "FP", "FN", "GT", "predictions", "GT_tracks",
                                           "MT", "ML", "frames") else float(value)
    out.update(hota(per_frame))
    out["pred_tracks"] = int(len(np.unique(np.concatenate([p for _, p, _ in per_frame] or [np.zeros(0)]))))
    return out
