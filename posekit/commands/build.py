"""Build an engine once and cache it (keyed by the model's checksum, backend, precision, batch
shapes and library versions); a stale or corrupt cached engine is rebuilt, never loaded.

  posekit build rtmdet-nano-person --backend onnxruntime --precision int8
  posekit build movenet-thunder --backend tensorrt --precision fp16 --batch 1,64,256 --device cuda
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registry name, e.g. movenet-thunder, rtmdet-nano-person")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime, aotinductor or tensorrt")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "int8"])
    p.add_argument("--batch", default="1,8,32", help="batch sizes MIN,OPT,MAX (default 1,8,32)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--force", action="store_true", help="rebuild even when a valid cached engine exists")


def run(args: argparse.Namespace) -> int:
    from posekit.build import build, parse_batch

    path = build(args.model, args.backend, args.precision, parse_batch(args.batch), args.device, force=args.force)
    print(path)
    return 0
