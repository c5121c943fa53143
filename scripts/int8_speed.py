"""INT8 vs FP32 pose/detector stage on the CPU, interleaved so that machine load hits both alike.

  POSEKIT_MODELS=../shared/models python scripts/int8_speed.py movenet-thunder --threads 2

Builds the INT8 model through the engine cache (posekit build ... --precision int8), then runs
rounds of: FP32 batch b, INT8 batch b; reports per engine the median over rounds of each round's
median latency, and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posekit.benchmark import tile, time_engine  # noqa: E402
from posekit.build import annotations_path, build, source_onnx  # noqa: E402
from posekit.compare import real_inputs  # noqa: E402
from posekit.engines.onnxruntime import OnnxRuntimeEngine  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    x = real_inputs(args.model, annotations_path(), limit=64)
    engines = {"fp32": OnnxRuntimeEngine(source_onnx(args.model), threads=args.threads),
               "int8": OnnxRuntimeEngine(build(args.model, precision="int8"), threads=args.threads)}
    result = {"model": args.model, "threads": args.threads, "load_before": os.getloadavg()[0], "rows": []}
    for b in (int(v) for v in args.batches.split(",")):
        batch = tile(x, b)
        per = {k: [] for k in engines}
        for _ in range(args.rounds):
            for name, engine in engines.items():
                per[name].append(time_engine(engine, batch, warmup=2, repeat=args.repeat)["latency_ms"])
        fp32, int8 = float(np.median(per["fp32"])), float(np.median(per["int8"]))
        row = {"batch": b, "fp32_ms": fp32, "int8_ms": int8, "speedup": fp32 / int8,
               "fp32_rounds": [round(v, 2) for v in per["fp32"]], "int8_rounds": [round(v, 2) for v in per["int8"]]}
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
    result["load_after"] = os.getloadavg()[0]
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
