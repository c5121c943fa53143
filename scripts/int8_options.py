"""Try ONNX Runtime INT8 quantisation options on a model; print speed and accuracy per option.

  POSEKIT_MODELS=../shared/models python scripts/int8_options.py movenet-thunder --threads 2

Calibrates on the first half of the real inputs (person crops / frames from the shared COCO mini
set) and measures the error on the other half; latency is the median of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posekit import registry  # noqa: E402
from posekit.build import annotations_path, source_onnx  # noqa: E402
from posekit.compare import _keypoint_error, real_inputs, run_batched  # noqa: E402
from posekit.engines.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from posekit.quantize import QuantOptions, output_errors, quantize_onnx  # noqa: E402


def median_ms(engine, x, repeat):
    for _ in range(3):
        engine(x)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        engine(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--only", help="comma-separated option labels to run (default all)")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    source = source_onnx(args.model)
    x = real_inputs(args.model, annotations_path(), limit=64)
    calib, held = x[: len(x) // 2], x[len(x) // 2 :]
    fp32 = OnnxRuntimeEngine(source, threads=args.threads)
    ref = run_batched(fp32, held, args.batch)
    base = {b: median_ms(fp32, held[:b], args.repeat) for b in (1, args.batch)}
    print(f"{args.model}: fp32 {base[1]:.2f} ms (batch 1), {base[args.batch]:.2f} ms (batch {args.batch}); "
          f"calibrate on {len(calib)}, test on {len(held)}", flush=True)
    convs = [n for n in __import__("onnx").load(str(source)).graph.node if n.op_type == "Conv"]
    heads = tuple(n.name for n in convs if any(n.name.startswith(f"/{h}/") for h in ("centre", "heatmaps", "regression", "offsets")))
    outs = tuple(n.name for n in convs if n.name.endswith("/out/Conv"))
    first_last = (convs[0].name, convs[-1].name)
    options = {
        "default": QuantOptions(),
        "entropy": QuantOptions(calibrate="Entropy"),
        "percentile": QuantOptions(calibrate="Percentile"),
        "exclude-heads": QuantOptions(exclude_nodes=heads),
        "exclude-head-outputs": QuantOptions(exclude_nodes=outs),
        "exclude-first-last": QuantOptions(exclude_nodes=first_last),
        "exclude-heads+stem": QuantOptions(exclude_nodes=heads + (convs[0].name,)),
        "per-tensor": QuantOptions(per_channel=False),
        "qoperator": QuantOptions(quant_format="QOperator"),
        "reduce-range": QuantOptions(reduce_range=True),
        "s8s8": QuantOptions(activation_type="int8"),
        "u8u8": QuantOptions(weight_type="uint8"),
        "all-ops": QuantOptions(op_types=None),
    }
    wanted = set(args.only.split(",")) if args.only else set(options)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, opt in options.items():
            if label not in wanted:
                continue
            try:
                t0 = time.perf_counter()
                path = quantize_onnx(source, Path(tmp) / f"{label}.onnx", calib, opt)
                seconds = time.perf_counter() - t0
                q = OnnxRuntimeEngine(path, threads=args.threads)
                out = run_batched(q, held, args.batch)
                errs = output_errors(ref, out)
                lat = {b: median_ms(q, held[:b], args.repeat) for b in (1, args.batch)}
                row = {"option": label, "ms_b1": lat[1], f"ms_b{args.batch}": lat[args.batch],
                       "speedup_b1": base[1] / lat[1], f"speedup_b{args.batch}": base[args.batch] / lat[args.batch],
                       "max_rel": max(e["max_rel"] for e in errs), "quantise_s": seconds,
                       **_keypoint_error(registry.get(args.model), ref, out)}
            except Exception as exc:  # noqa: BLE001 - report the option that failed and go on
                row = {"option": label, "error": f"{type(exc).__name__}: {exc}"}
            rows.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"fp32_ms": base, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
