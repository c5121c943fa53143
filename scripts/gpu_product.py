#!/usr/bin/env python
"""The product at engine speed, on the GPU: now `posekit bench --stage product` (posekit/product_bench.py);
this script keeps its old command line and runs that stage.

  POSEKIT_MODELS=.gpu/models python scripts/gpu_product.py --video .gpu/demo.mp4 --frames 3000 \\
      --out $OUT/product [--device cuda --backend inductor --precision fp16] [--skip track]

is

  posekit bench --stage product --video .gpu/demo.mp4 --frames 3000 --json $OUT/product/product.json \\
      --work /tmp/posekit-product --device cuda --backend inductor --precision fp16 [--commands infer]

(product.json and commands.log in --out). The old --profile and the skipping of the engine and
library rows are gone: those rows are what the commands are measured against.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from posekit.cli import main as posekit

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", required=True)
    p.add_argument("--frames", default="3000")
    p.add_argument("--out", required=True, help="where product.json and commands.log go")
    p.add_argument("--work", default="/tmp/posekit-product", help="scratch folder: the videos and the commands' outputs")
    p.add_argument("--device", default="cuda")
    p.add_argument("--backend", default="inductor")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--skip", default="", help="comma-separated commands not to time: infer,track")
    args = p.parse_args()
    skip = set(args.skip.split(","))
    commands = ",".join(c for c in ("infer", "track") if c not in skip)
    return posekit(["-v", "bench", "--stage", "product", "--video", args.video, "--frames", args.frames,
                    "--json", str(Path(args.out) / "product.json"), "--work", args.work, "--device", args.device,
                    "--backend", args.backend, "--precision", args.precision, "--commands", commands])


if __name__ == "__main__":
    sys.exit(main())
