"""Export a registered network to ONNX.

The export is checked: torch and ONNX Runtime run on the same real person image and the
command fails if they disagree beyond tolerance. --via convert (the default where torch is not
installed) converts TF.js and OpenVINO IR weights with numpy and onnx alone, checked against a
numpy run of the source graph on the same image. The ONNX carries its metadata (posekit.*
props: input size, colour order, normalisation, keypoints, skeleton, outputs, source sha256).

  posekit export movenet-thunder --out thunder.onnx
  posekit export movenet-lightning --out lightning-b8.onnx --batch 8 --fp16
  posekit export movenet-thunder --out thunder-any-size.onnx --spatial dynamic
"""

from __future__ import annotations

import argparse


def _batch(value: str) -> int | str:
    if value == "dynamic":
        return value
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'dynamic' or a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected 'dynamic' or a positive integer, got {value!r}")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name (see `posekit models`)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--batch", type=_batch, default="dynamic", help="'dynamic' (default) or a static batch size")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the file)")
    p.add_argument("--weights", help="explicit weight file or folder (default: the registry's search order)")
    p.add_argument("--no-slim", action="store_true", help="skip the onnxslim clean-up")
    p.add_argument("--via", choices=("auto", "torch", "convert"), default="auto",
                   help="torch: export the torch network; convert: convert the weights without torch (TF.js, "
                        "OpenVINO IR); auto (default): torch where it is installed, else convert")
    p.add_argument("--spatial", choices=("fixed", "dynamic"), default="fixed",
                   help="'fixed' (default): the model's input size; 'dynamic' (pose models): any height and "
                        "width that are multiples of 32, for crops shaped like the person (what posekit's "
                        "CPU pipeline runs)")


def run(args: argparse.Namespace) -> int:
    from importlib.util import find_spec

    via = args.via if args.via != "auto" else ("torch" if find_spec("torch") else "convert")
    if via == "convert":
        from posekit.convert import convert_report

        if args.fp16 or args.opset != 17:
            raise ValueError("--via convert writes float32 weights at opset 17; --fp16 and --opset need --via torch "
                             "(pip install 'posekit[gpu]')")
        report = convert_report(args.name, args.out, batch=args.batch, spatial=args.spatial, weights=args.weights)
        reference = "a numpy run of the source graph"
    else:
        from posekit.export import export_onnx
        from posekit.extras import require

        require("torch", f"exporting {args.name} from its torch network")
        report = export_onnx(args.name, args.out, batch=args.batch, opset=args.opset, fp16=args.fp16,
                             weights=args.weights, simplify=not args.no_slim, spatial=args.spatial)
        reference = "torch"
    diffs = ", ".join(f"{k} {v:.2g}" for k, v in report.max_abs_diff.items())
    shape = ", any height and width (multiples of 32)" if args.spatial == "dynamic" else ""
    print(f"wrote {report.path} (batch {report.batch}{shape}); max |onnx - {reference}| on the check image: {diffs}")
    if report.fp16_rounding is not None:
        change = ", ".join(f"{k} {v:.2g}" for k, v in report.fp16_rounding.items())
        print(f"float16 weights change the outputs by at most: {change} (versus float32 weights)")
    return 0
