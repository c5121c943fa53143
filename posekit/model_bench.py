"""Every registered detector + pose combination (and each bottom-up model), timed and scored in
one run on one machine: `posekit bench --stage models`.

Speed comes from `posekit.baseline.bench_pipeline`, which times every estimator and the plain
per-person loop on the same image files, passes alternating so that a change in the machine's
load hits all of them alike. Accuracy is COCO keypoint AP (pycocotools) on detected boxes, and on
the annotated boxes for top-down models (the pose model alone).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from posekit import families, registry

log = logging.getLogger(__name__)


def combinations(dets: Sequence[str], poses: Sequence[str]) -> list[tuple[str | None, str]]:
    """(detector, pose) pairs: every detector with every top-down model, each bottom-up model alone."""
    out: list[tuple[str | None, str]] = []
    for pose in poses:
        if families.of(registry.get(pose)).kind == "bottom-up":
            out.append((None, pose))
        else:
            out.extend((det, pose) for det in dets)
    return out


def label(det: str | None, pose: str, precision: str) -> str:
    return f"{det or '(bottom-up)'} + {pose} {precision}"


def bench_models(images: str | os.PathLike, ann: str | os.PathLike, dets: Sequence[str], poses: Sequence[str],
                 precisions: Sequence[str] = ("int8", "fp32"), repeat: int = 3, backend: str = "onnxruntime",
                 device: str = "cpu", workers: int = 3) -> dict:
    """Returns {"rows": [...], "plain": {...}, "images", "repeat", "machine"}; one row per
    (detector, pose model, precision): images/s, speed-up over the plain loop, CPU ms per person,
    AP and AP50 on detected boxes, AP on the annotated boxes (top-down only)."""
    from posekit.baseline import bench_pipeline
    from posekit.estimators import make_estimator
    from posekit.evaluate import evaluate

    for name in (*dets, *poses):
        registry.get(name)  # unknown names fail first, with close matches
    estimators, keys = {}, {}
    for det, pose in combinations(dets, poses):
        for precision in precisions:
            name = label(det, pose, precision)
            log.info("preparing %s", name)
            estimators[name] = make_estimator(det=det, pose=pose, device=device, backend=backend,
                                              precision=precision, workers=workers)
            keys[name] = (det, pose, precision)
    report = bench_pipeline(images, ann, estimators, repeat=repeat)
    gt_ap: dict[tuple[str, str], float | None] = {}
    images_dir = Path(images)
    rows = []
    for name, (det, pose, precision) in keys.items():
        entry = report[name]
        if (pose, precision) not in gt_ap:
            estimator = estimators[name]
            gt_ap[(pose, precision)] = (evaluate(ann, images_dir, estimator, boxes=("gt",))["gt"]["AP"]
                                        if getattr(estimator, "takes_boxes", True) else None)
        people = max(entry["people"], 1)
        rows.append({"det": det or "-", "pose": pose, "precision": precision,
                     "images_per_s": entry["images_per_s"], "speedup": entry["speedup"],
                     "cpu_ms_per_person": round(entry["cpu_ms_per_image"] * report["images"] / people, 1),
                     "people": entry["people"], "AP": entry.get("AP"), "AP50": entry.get("AP50"),
                     "AP_gt_boxes": None if gt_ap[(pose, precision)] is None else round(gt_ap[(pose, precision)], 4)})
    return {"rows": rows, "plain": report["plain"], "images": report["images"], "repeat": repeat,
            "machine": report["machine"]}


def format_rows(report: dict) -> str:
    rows = [("detector", "pose", "prec", "images/s", "vs plain", "CPU ms/person", "AP", "AP50", "AP gt boxes")]
    for r in sorted(report["rows"], key=lambda r: -(r["AP"] or 0)):
        rows.append((r["det"], r["pose"], r["precision"], f"{r['images_per_s']:.2f}", f"{r['speedup']:.2f}x",
                     f"{r['cpu_ms_per_person']:.1f}", f"{r['AP']:.3f}", f"{r['AP50']:.3f}",
                     "-" if r["AP_gt_boxes"] is None else f"{r['AP_gt_boxes']:.3f}"))
    plain = report["plain"]
    rows.append(("plain loop", "(rtmdet + movenet-thunder)", "fp32", f"{plain['images_per_s']:.2f}", "1.00x",
                 "-", f"{plain.get('AP', float('nan')):.3f}", f"{plain.get('AP50', float('nan')):.3f}", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in rows)


def write_plot(report: dict, path: str | os.PathLike) -> Path:
    """A PNG of AP (detected boxes) against images/s, one point per row, the plain loop marked."""
    from posekit.benchmark import PlotUnavailable
    from posekit.io import atomic_path

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("the AP-vs-speed plot needs matplotlib: pip install matplotlib") from exc
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for r in report["rows"]:
        marker = "o" if r["precision"] == "fp32" else "s"
        ax.scatter(r["images_per_s"], r["AP"], marker=marker)
        ax.annotate(f"{r['det'].split('-')[0]}+{r['pose']} {r['precision']}", (r["images_per_s"], r["AP"]),
                    fontsize=6, xytext=(3, 2), textcoords="offset points")
    plain = report["plain"]
    ax.scatter(plain["images_per_s"], plain.get("AP", 0), marker="x", color="black")
    ax.annotate("plain loop", (plain["images_per_s"], plain.get("AP", 0)), fontsize=7, xytext=(3, -8),
                textcoords="offset points")
    ax.set_xlabel("images/s (whole pipeline, this machine)")
    ax.set_ylabel("COCO keypoint AP, detected boxes")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{report['images']} images; {report['machine'].get('processor', '')}", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)
    return Path(path)
