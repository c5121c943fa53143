"""Track people through videos (or a camera): for each input, write to --out

  <name>.jsonl            one line per frame: every person's box, keypoints, scores and track_id
  <name>.posetrack.json   PoseTrack 2018/21 JSON, the format the official poseval tools score
  <name>.txt              with --format mot: MOTChallenge results (frame,id,x,y,w,h,score,-1,-1,-1,
                          1-based frames), what MOT benchmarks and `posekit eval-track` score
  <name>.mp4              the video drawn with one colour per track ID and short trails

A digit names a camera (stop with --max-frames or Ctrl-C). Each output appears only once its
video is done; a video that cannot be read leaves none and is reported, and the others go on.
"""

from __future__ import annotations

import argparse
import sys

from posekit.commands import DET_HELP, DET_THRESHOLD_HELP, DEVICE_HELP, POSE_HELP, add_backend_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--trail", type=int, default=20, help="trail length in frames (default 20)")
    p.add_argument("--fps", type=float, help="frame rate for timestamps and output (default: the video's)")
    p.add_argument("--max-frames", type=int, help="stop each input after this many frames")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--det", default=None, help=DET_HELP)
    p.add_argument("--pose", default=None, help=POSE_HELP)
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    add_backend_arguments(p)
    p.add_argument("--det-threshold", type=float, default=0.2,
                   help="detector boxes scored below are dropped (default 0.2: the tracker's second "
                        "stage uses boxes between this and --track-high)")
    p.add_argument("--oks-threshold", type=float, default=0.8,
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

    from posekit.io import InputError, Source, output_names, video_fps
    from posekit.commands import make_estimator
    from posekit.tracking.video import track_video

    sources: list[str | int] = [int(v) if v.isdigit() else v for v in args.videos]
    # distinct output names even when two folders hold a video of the same name
    inputs = [Source("camera" if isinstance(s, int) else "video", str(s)) for s in sources]
    estimator = make_estimator(args, det_score_threshold=args.det_threshold, oks_threshold=args.oks_threshold or None)
    failed = 0
    for vid_id, (source, name) in enumerate(zip(sources, output_names(inputs))):
        try:
            fps = args.fps or video_fps(source, default=30.0)
            result = track_video(source, args.out, estimator=estimator, tracker=make_tracker(args, fps),
                                 render=not args.no_video, trail=args.trail, fps=fps, vid_id=vid_id,
                                 max_frames=args.max_frames, stem=os.path.splitext(name)[0],
                                 formats=args.format, save_detections=args.save_detections)
        except (InputError, FileNotFoundError) as exc:
            failed += 1
            print(f"posekit track: error: {exc}", file=sys.stderr, flush=True)
            continue
        outputs = ", ".join(str(p) for p in result.outputs)
        print(f"{result.source}: {result.frames} frames, {result.tracks} tracks -> {outputs}", flush=True)
    return 1 if failed else 0
