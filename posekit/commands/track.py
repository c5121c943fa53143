"""Track people through videos (or a camera): for each input, write to --out

  <name>.jsonl            one line per frame: every person's box, keypoints, scores and track_id
  <name>.posetrack.json   PoseTrack 2018/21 JSON, the format the official poseval tools score
  <name>.txt              with --format mot: MOTChallenge results (frame,id,x,y,w,h,score,-1,-1,-1,
                          1-based frames), what MOT benchmarks and `posekit eval-track` score
  <name>.mp4              the video drawn with one colour per track ID and short trails

The JSON Lines records are the schema posekit.frame/1 that `posekit infer` writes too (see the
README), with the container's timestamps. Existing outputs are not replaced without --overwrite.

Who is drawn: a person is reported (and drawn) once the tracker has matched them --min-hits
times, a track starting only from a box scoring --track-high or more in the first frame and
--track-birth or more after it; the render also leaves out boxes scoring under --vis-threshold
(default 0.5, as `posekit infer` does, so both draw the same people once tracks have started).

A digit names a camera (stop it with --max-frames, Ctrl-C or SIGTERM). Each output is renamed
into place when its video ends, also on Ctrl-C, SIGTERM or an error, holding every frame done;
a video that cannot be read leaves none and is reported, and the others go on (exit code 1). A
full disk stops the run, keeping what is finished.
"""

from __future__ import annotations

import argparse
import sys

from posekit.commands import DET_HELP, DET_THRESHOLD_HELP, DEVICE_HELP, POSE_HELP, add_backend_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    from posekit.cli import non_negative_int, positive_float, positive_int, unit_interval

    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, or a camera index such as 0")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the outputs")
    add_model_arguments(p)
    add_tracker_arguments(p)
    p.add_argument("--format", default="jsonl,posetrack", type=_formats, metavar="F[,F]",
                   help="tracked outputs, comma-separated: jsonl, posetrack, mot (default jsonl,posetrack)")
    p.add_argument("--save-detections", action="store_true",
                   help="also write <name>.detections.npz: every frame's poses before tracking, to replay "
                        "into a tracker without the models (posekit.tracking.detections)")
    p.add_argument("--no-video", action="store_true", help="skip the rendered video")
    p.add_argument("--vis-threshold", type=unit_interval, default=0.5, metavar="SCORE",
                   help="the render leaves out people whose detector box score is below this (default "
                        "%(default)s, as in `posekit infer`); the JSON files keep every tracked person")
    p.add_argument("--trail", type=non_negative_int, default=20, help="trail length in frames (default 20)")
    p.add_argument("--fps", type=positive_float,
                   help="frame rate for timestamps and output (default: the container's timestamps and rate)")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop each input after N frames")
    p.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    from posekit.cli import unit_interval

    p.add_argument("--det", default=None, help=DET_HELP)
    p.add_argument("--pose", default=None, help=POSE_HELP)
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    add_backend_arguments(p)
    p.add_argument("--det-threshold", type=unit_interval, default=None,
                   help=DET_THRESHOLD_HELP + "; the same boxes as `posekit infer`, so both draw the same people "
                        "(on MOT15, PicoDet boxes >= 0.35 tracked better than >= 0.2: BENCHMARKS.md)")
    p.add_argument("--oks-threshold", type=unit_interval, default=0.8,
                   help="pose NMS as in `posekit infer`: drop a person whose OKS with a better one "
                        "exceeds this; 0 turns it off (default 0.8)")


def _formats(text: str) -> tuple[str, ...]:
    from posekit.tracking.video import FORMATS

    names = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    bad = [f for f in names if f not in FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected formats among {', '.join(FORMATS)}, got {text!r}")
    return names


# The tracker options' defaults are PoseTracker's (chosen on MOT15, see its docstring); the help
# repeats them, and tests/test_mot15.py checks that it says the same.
TRACKER_OPTIONS = {
    # option: (PoseTracker argument, type, help)
    "--track-high": ("high_score", float, "first-stage match score (default 0.3)"),
    "--track-birth": ("new_track_score", float, "the least score that starts a new track (default 0.5; "
                                                "RTMDet-nano scores false people on poles and signs 0.25-0.45)"),
    "--track-low": ("low_score", float, "poses scored below are ignored; between this and --track-high they "
                                        "only extend tracks (default 0.2)"),
    "--min-hits": ("min_hits", int, "matches before a track is reported (default 3)"),
    "--track-buffer": ("track_buffer", int, "frames a lost track is kept for re-identification (default 60)"),
}


def add_tracker_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tracker")
    g.add_argument("--track-score", choices=["box", "person"], default="box",
                   help="the score the tracker thresholds apply to (default box: the detector's)")
    for option, (_, kind, text) in TRACKER_OPTIONS.items():
        g.add_argument(option, type=kind, default=None, help=text)
    g.add_argument("--smooth", action="store_true", help="One-Euro smoothing of the reported keypoints")


def make_tracker(args: argparse.Namespace, frame_rate: float = 30.0):
    from posekit.tracking import PoseTracker

    given = {name: getattr(args, option[2:].replace("-", "_")) for option, (name, _, _) in TRACKER_OPTIONS.items()}
    return PoseTracker(score_field="box_scores" if args.track_score == "box" else "scores", frame_rate=frame_rate,
                       smoothing=args.smooth, **{k: v for k, v in given.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from posekit.cli import check_device
    from posekit.commands import make_estimator
    from posekit.io import (InputError, OutputError, Source, check_out, describe_os_error, is_disk_full,
                            output_names, prepare_out, remove_stale_parts, video_fps)
    from posekit.tracking.video import track_video

    check_device(args.device)
    check_out(args.out)
    sources: list[str | int] = [int(v) if v.isdigit() and not os.path.exists(v) else v for v in args.videos]
    # distinct output names even when two folders hold a video of the same name, or one folder
    # holds clip.mp4 and clip.avi
    inputs = [Source("camera" if isinstance(s, int) else "video", str(s)) for s in sources]
    stems = [os.path.splitext(n)[0] if not isinstance(s, int) else n for s, n in zip(sources, output_names(inputs))]
    out = Path(args.out)

    def planned(stem: str) -> list[Path]:
        suffixes = {"jsonl": ".jsonl", "posetrack": ".posetrack.json", "mot": ".txt"}
        paths = [out / f"{stem}{suffixes[f]}" for f in args.format]
        if args.save_detections:
            paths.append(out / f"{stem}.detections.npz")
        return paths if args.no_video else [*paths, out / f"{stem}.mp4"]

    if not args.overwrite:
        existing = [p for stem in stems for p in planned(stem) if p.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise OutputError(f"{existing[0]}: already exists{more}; pass --overwrite to replace it")
    estimator = make_estimator(args, det_score_threshold=args.det_threshold, oks_threshold=args.oks_threshold or None)
    prepare_out(out)
    remove_stale_parts(out)
    failed = 0
    for vid_id, (source, stem) in enumerate(zip(sources, stems)):
        try:
            rate = args.fps or video_fps(source, default=30.0)  # the tracker's frame rate (its buffers)
            result = track_video(source, out, estimator=estimator, tracker=make_tracker(args, rate),
                                 render=not args.no_video, trail=args.trail, fps=args.fps, vid_id=vid_id,
                                 max_frames=args.max_frames, stem=stem, formats=args.format,
                                 save_detections=args.save_detections, vis_threshold=args.vis_threshold,
                                 progress=True)
        except KeyboardInterrupt:
            _kept(source, planned(stem), "interrupted")
            raise
        except (InputError, FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
            failed += 1
            message = describe_os_error(exc) if isinstance(exc, OSError) and exc.errno else str(exc)
            print(f"posekit track: error: {message}", file=sys.stderr, flush=True)
            _kept(source, planned(stem), "failed")
            if is_disk_full(exc):
                print("posekit track: stopping: the disk is full", file=sys.stderr, flush=True)
                break
            continue
        outputs = ", ".join(str(p) for p in result.outputs)
        print(f"{result.source}: {result.frames} frames, {result.tracks} tracks, {result.seconds:.2f} s "
              f"({result.rate:.1f} frames/s) -> {outputs}", flush=True)
    if not args.no_video:
        t = make_tracker(args)
        print(f"renders draw tracked people (a track starts at score >= --track-high {t.high_score:g} in the first "
              f"frame, --track-birth {t.new_track_score:g} after it, and is shown after --min-hits {t.min_hits} "
              f"matches) whose box score is >= --vis-threshold {args.vis_threshold:g}", flush=True)
    return 1 if failed else 0


def _kept(source: object, paths: list, why: str) -> None:
    kept = [str(p) for p in paths if p.exists()]
    if kept:
        print(f"{source}: {why}; kept the frames done in {', '.join(kept)}", flush=True)
