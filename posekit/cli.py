"""The `posekit` command. Thin: each subcommand lives in posekit/commands/<name>.py with
`add_arguments(parser)` and `run(args) -> int`, and calls one library function.

Command modules import only argparse-level things at the top; runtimes load inside `run`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module

# subcommand -> (module under posekit.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("models", "list the registered networks, their sources, licences and files"),
    "build": ("build", "build an engine (ONNX Runtime INT8, AOTInductor, TensorRT) once and cache it"),
    "compare": ("compare", "per-output error and AP of engines and precisions against the torch reference"),
    "infer": ("infer", "find people and their keypoints in images, folders and videos"),
    "eval": ("eval", "COCO keypoint AP on an annotated image folder"),
    "track": ("track", "track people through videos: JSON Lines, PoseTrack JSON, rendered video"),
    "eval-track": ("eval_track", "score tracked poses against ground truth (MOTA, IDF1, HOTA)"),
    "bench": ("bench", "time a stage (pipeline: posekit against the plain per-person loop)"),
    "export": ("export", "export a registered network to ONNX, checked against torch"),
    "serve": ("serve", "serve poses over HTTP with dynamic batching (needs posekit[serve])"),
}


# -- argument types that check their range when the command line is parsed ---------------------


def _number(text: str, kind: type, what: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if kind is float and value != value:  # NaN
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A float in [0, 1] (a score threshold)."""
    value = _number(text, float, "a number from 0 to 1")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of frames, workers, crops)."""
    value = _number(text, int, "a whole number >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int, "a whole number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0 (a frame rate)."""
    value = _number(text, float, "a number > 0")
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def check_device(device: str) -> None:
    """A one-line ValueError for a CUDA device this machine does not have (checked before any
    model is built); several devices (cuda:0,1, cuda:all, cpu,cpu: `posekit.multidevice`) are
    checked one by one."""
    if "," in device or device.endswith(":all"):
        from posekit.multidevice import split_devices

        for one in split_devices(device):
            check_device(one)
        return
    if not device.startswith("cuda"):
        if device != "cpu":
            raise ValueError(f"--device {device}: expected cpu, cuda or cuda:N")
        return
    index = device.partition(":")[2]
    if index and not index.isdigit():
        raise ValueError(f"--device {device}: expected cpu, cuda or cuda:N")
    count = _cuda_devices()
    if count == 0:
        raise ValueError(f"--device {device}: no CUDA device here (no NVIDIA driver or no CUDA build of "
                         f"torch/onnxruntime); use --device cpu")
    if index and int(index) >= count:
        raise ValueError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")


def _cuda_devices() -> int:
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        import onnxruntime
    except ImportError:
        return 0
    return 1 if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posekit",
        description="Fast multi-person 2D human pose estimation and tracking.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = import_module(f"posekit.commands.{module_name}")
        doc = (module.__doc__ or help_text).strip()
        p = sub.add_parser(name, help=help_text, description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _version() -> str:
    from posekit import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # First-use work (exporting a model, building an engine) takes seconds: always say so.
    for name in ("posekit.export", "posekit.build", "posekit.convert"):
        logging.getLogger(name).setLevel(min(level, logging.INFO))
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from posekit.journal import exit_code, interrupt_name, signals_as_interrupts

    try:
        with signals_as_interrupts():
            return int(args._run(args) or 0)
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM/SIGHUP (posekit.journal.Terminated)
        print(f"posekit {args.command}: interrupted by {interrupt_name(exc)}", file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:  # a read-only or full disk, a folder named like a file, an unwritable cache
        if args.verbose >= 2:
            raise
        from posekit.io import describe_os_error

        print(f"posekit {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except (ValueError, ImportError, RuntimeError, KeyError) as exc:
        if args.verbose >= 2:
            raise
        print(f"posekit {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
