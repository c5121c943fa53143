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
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, ImportError, RuntimeError, KeyError) as exc:
        if args.verbose >= 2:
            raise
        print(f"posekit {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
