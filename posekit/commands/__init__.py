"""One module per `posekit` subcommand: `add_arguments(parser)` and `run(args) -> exit code`."""

from __future__ import annotations

import argparse

BACKEND_HELP = (
    "engine the models run on (default %(default)s). onnxruntime: the CPU default (PicoDet-S + "
    "PP-TinyPose in fp32; MoveNet runs its calibrated INT8 build, made on first use and reused from the "
    "engine cache, unless --precision fp32). tensorrt: cached TensorRT plans, CUDA only, where TensorRT is "
    "installed. torch / inductor: the all-torch pipeline (YOLOX + MoveNet by default, every step on "
    "--device, meant for cuda; inductor compiles on the first batches). An unavailable combination is "
    "refused, naming what is available here"
)
PRECISION_HELP = (
    "pose model precision (default: int8 for MoveNet on onnxruntime on the CPU, fp32 otherwise: PP-TinyPose "
    "loses 12 AP points in INT8): onnxruntime int8|fp32 (MoveNet fp32: about 1 AP point more, 1.6x slower "
    "on the CPU), tensorrt fp32|fp16|int8, torch/inductor fp32|fp16|bf16 (both networks). The detector "
    "stays fp32 on onnxruntime/tensorrt: INT8 RTMDet measured slower and less accurate than fp32"
)
DET_HELP = ("person detector (registry name, see `posekit models`; default picodet-s-320-pedestrian, "
            "yolox-nano for --backend torch/inductor)")
POSE_HELP = ("pose model (registry name, see `posekit models`; default tinypose-256x192, the most accurate "
             "that runs at 2x the plain loop on the CPU, movenet-thunder for --backend torch/inductor; "
             "tinypose-128x96 and movenet-lightning are faster, movenet-multipose finds people without a detector)")
DET_THRESHOLD_HELP = ("drop detector boxes scoring below this (default: the detector's own on onnxruntime and "
                      "tensorrt, 0.35 for PicoDet and 0.2 for the others; 0.3 in the torch/inductor pipeline)")


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """--backend and --precision, shared by infer, eval and track."""
    p.add_argument("--backend", default="onnxruntime", metavar="NAME", help=BACKEND_HELP)
    p.add_argument("--precision", default=None, metavar="P", help=PRECISION_HELP)
    p.add_argument("--crop-shape", choices=("fit", "square"), default="fit",
                   help="person crops for the pose model (default %(default)s): fit = shaped and sized like "
                        "the person (a standing person runs at 256x128, half the work of a square crop; "
                        "engines that take any input size, i.e. onnxruntime), square = the model's input "
                        "size for everyone (what other tools do)")
    p.add_argument("--flip", action="store_true",
                   help="flip test for pose models that have one (PP-TinyPose): each crop and its mirror image, "
                        "averaged; about 1-3 AP points more, twice the pose work")


DEVICE_HELP = ("cpu, cuda or cuda:N (default %(default)s); several devices split the inputs, one worker "
               "process each, results in input order: cuda:0,1, cuda:all, or cpu,cpu (two CPU workers)")


def make_estimator(args: argparse.Namespace, **options):
    """The pipeline the arguments ask for (posekit.estimators.make_estimator); refused combinations
    raise ValueError. A --device naming several devices gives a `posekit.multidevice.MultiDeviceEstimator`."""
    from posekit.estimators import make_estimator as make
    from posekit.multidevice import MultiDeviceEstimator, split_devices

    if args.crop_shape != "fit":  # the all-torch pipeline always crops square on the device
        options["crop_shape"] = args.crop_shape
    if getattr(args, "flip", False):
        options["flip"] = True
    devices = split_devices(args.device)
    if len(devices) > 1:
        return MultiDeviceEstimator(devices, det=args.det, pose=args.pose, backend=args.backend,
                                    precision=args.precision, **options)
    return make(det=args.det, pose=args.pose, device=args.device, backend=args.backend,
                precision=args.precision, **options)
