"""Time MoveNet on the CPU: torch eager, posekit's ONNX export, and Google's graph (tf2onnx), per crop.

    POSEKIT_MODELS=../shared/models python scripts/bench_movenet.py [--threads 2] [--repeat 20]

Prints one table row per (model, runtime, batch): median ms per batch and per crop, on real
person crops (the check image, resized). Run it on a quiet machine: it measures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["movenet-lightning", "movenet-thunder"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from posekit import registry
    from posekit.engines.onnxruntime import OnnxRuntimeEngine
    from posekit.export import check_image, export_onnx
    from posekit.models import build

    torch.set_num_threads(args.threads)
    rows = [("model", "runtime", "batch", "ms/batch", "ms/crop")]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            spec = registry.get(name)
            start = time.perf_counter()
            onnx_path = export_onnx(name, Path(tmp) / f"{name}.onnx").path
            rows.append((name, "export (incl. check)", "-", f"{(time.perf_counter() - start) * 1e3:.0f}", "-"))
            model = build(name)
            engine = OnnxRuntimeEngine(onnx_path, threads=args.threads)
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
            variant = name.split("-", 1)[1]
            reference = Path(os.environ.get("POSEKIT_MODELS", "../shared/models")) / "reference" / f"movenet-{variant}.tf2onnx.onnx"
            for batch in args.batches:
                images = check_image(spec, batch)
                with torch.no_grad():
                    tensor = torch.from_numpy(images)
                    t = _median_ms(lambda: model(tensor), args.repeat)
                rows.append((name, "torch eager", str(batch), f"{t:.1f}", f"{t / batch:.1f}"))
                t = _median_ms(lambda: engine(images), args.repeat)
                rows.append((name, "posekit onnx (ORT)", str(batch), f"{t:.1f}", f"{t / batch:.1f}"))
                if batch == 1 and reference.is_file():
                    session = ort.InferenceSession(str(reference), options, providers=["CPUExecutionProvider"])
                    nhwc = images.transpose(0, 2, 3, 1).astype(np.int32)
                    t = _median_ms(lambda: session.run(None, {"input:0": nhwc}), args.repeat)
                    rows.append((name, "google tf2onnx (ORT)", "1", f"{t:.1f}", f"{t:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"threads {args.threads}, repeat {args.repeat}, 1-min load average {load:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
