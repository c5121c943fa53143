"""Find every person's 17 keypoints in images and videos.

Inputs are image files, folders (searched recursively, following links but never round a link
loop), glob patterns ("photos/**/*.jpg") and video files; a bare number is a camera index.
Results go to --out:

  DIR/results.json          every image's people, COCO keypoint results format
  DIR/results.images.json   the image_id of each image (a COCO file: COCO(it).loadRes(results.json))
  DIR/<video>.jsonl         one line per video frame (schema posekit.frame/1, see the README)
  DIR/vis/...               rendered images and videos (skip with --no-vis); people scoring
                            whose box score is below --vis-threshold are not drawn (the
                            results keep everyone)

Outputs take the input's file name; inputs that share one (day1/img.jpg, day2/img.jpg) keep the
path below the folder they share. Existing outputs are not replaced without --overwrite.

Nothing finished is lost: each image is recorded in DIR/results.journal.jsonl as it is done, and
results.json is written at the end and also on Ctrl-C, SIGTERM, a full disk or an error, with
every image finished; --resume then continues without redoing them. An input that cannot be
read (or whose render cannot be written) is named in a warning and counted as a failure; the
others are still processed, and the exit code is 1 when any input failed (130/143 when stopped
by SIGINT/SIGTERM).

On a Ray cluster (--ray, pip install 'posekit[ray]'): images and frame ranges of each video go to
a pool of actors (one per GPU, or per --ray-cpus CPUs), each running the same pipeline; the
results are written as parts under DIR/.posekit-ray and merged into the same results.json and
<video>.jsonl (no renders; --track tracks each merged video here). Re-running the command
continues from the parts; an actor that dies is replaced and its work run again.
"""

from __future__ import annotations

import argparse

from posekit.commands import DET_HELP, DET_THRESHOLD_HELP, DEVICE_HELP, POSE_HELP, add_backend_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    from posekit.cli import positive_int, unit_interval

    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder, glob pattern, video, or camera index")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for results.json, <video>.jsonl and renders")
    p.add_argument("--ann", metavar="JSON", help="COCO annotation file: take each image's image_id from it")
    p.add_argument("--no-vis", action="store_true", help="do not write rendered images and videos")
    p.add_argument("--vis-threshold", type=unit_interval, default=0.5, metavar="SCORE",
                   help="renders draw people whose detector box score is at least this (default %(default)s, "
                        "the score a new track needs in `posekit track` (--track-birth), so infer and track "
                        "draw the same people; results.json and the JSON Lines keep everyone found)")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop each video or camera after N frames")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out: inputs its journal lists as done are skipped")
    p.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")
    p.add_argument("--det", default=None, help=DET_HELP)
    p.add_argument("--pose", default=None, help=POSE_HELP)
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    add_backend_arguments(p)
    p.add_argument("--batch", type=positive_int, default=None,
                   help="most person crops per pose-model call (default: 2 on the CPU, where bigger batches are slower, 32 on a GPU)")
    p.add_argument("--det-threshold", type=unit_interval, default=None, help=DET_THRESHOLD_HELP)
    p.add_argument("--oks-threshold", type=unit_interval, default=0.8,
                   help="pose NMS: drop a person whose OKS with a better one exceeds this, 0 to 1; 0 turns it off (default %(default)s)")
    p.add_argument("--min-score", type=unit_interval, default=0.0,
                   help="drop people whose person score (box x mean keypoint score) is below this (default %(default)s)")
    p.add_argument("--workers", type=positive_int, default=3, help="threads running frames at once (default %(default)s)")
    p.add_argument("--track", action="store_true",
                   help="track people through each video: a track_id per person, one colour per ID")
    from posekit.commands.track import add_tracker_arguments

    add_tracker_arguments(p)
    ray = p.add_argument_group("on a Ray cluster (pip install 'posekit[ray]')")
    ray.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help="run on a Ray cluster with Ray Data: images and video frame ranges spread over a pool of "
                          "actors. ADDRESS: none starts a local cluster for the run (RAY_ADDRESS, when set, names another); auto = the cluster `ray start` runs here; "
                          "ray://HOST:10001 through Ray Client; HOST:6379 a head node. Writes results.json and "
                          "<video>.jsonl as without it (no renders); --track tracks each video in this process "
                          "afterwards. Re-running continues: finished parts (in DIR/.posekit-ray) are not run again")
    ray.add_argument("--ray-actors", type=positive_int, default=None, metavar="N",
                     help="actors in the pool (default: one per GPU with --device cuda, else one per --ray-cpus CPUs)")
    ray.add_argument("--ray-cpus", type=positive_int, default=1, metavar="N",
                     help="CPUs per actor (default %(default)s; the actor runs that many frames at once)")
    ray.add_argument("--ray-frames", type=positive_int, default=300, metavar="N",
                     help="frames per video range: one unit of work (default %(default)s)")


def make_infer_estimator(args: argparse.Namespace):
    """The estimator `posekit infer` runs for its parsed arguments (also what `posekit bench
    --stage product` times in its own process)."""
    from posekit.commands import make_estimator

    return make_estimator(args, batch=args.batch, det_score_threshold=args.det_threshold,
                          oks_threshold=args.oks_threshold or None, min_score=args.min_score, workers=args.workers)


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from posekit.cli import check_device
    from posekit.commands.track import make_tracker
    from posekit.infer import infer
    from posekit.io import check_out
    from posekit.journal import exit_code

    if args.resume and args.overwrite:
        raise ValueError("--resume keeps the finished outputs and --overwrite replaces them: give one")
    if args.ray is not None:
        return _run_ray(args)
    check_device(args.device)
    check_out(args.out)  # a read-only or file --out fails here, in one line, before any model is built
    # made before anything is written, so a refused backend leaves no outputs behind
    estimator = make_infer_estimator(args)
    summary = infer(args.inputs, args.out, ann=args.ann, vis=not args.no_vis, estimator=estimator,
                    progress=True, tracker=partial(make_tracker, args) if args.track else None,
                    max_frames=args.max_frames, vis_threshold=args.vis_threshold, resume=args.resume,
                    overwrite=args.overwrite)
    print(summary.text(), flush=True)
    if summary.interrupted:
        from posekit.journal import Terminated
        import signal

        return exit_code(KeyboardInterrupt() if summary.interrupted == "SIGINT"
                         else Terminated(getattr(signal, summary.interrupted)))
    return 1 if summary.failures else 0


def _run_ray(args: argparse.Namespace) -> int:
    from functools import partial

    from posekit.commands.track import make_tracker
    from posekit.distributed import infer
    from posekit.io import check_out

    if "," in args.device or args.device.endswith(":all"):
        raise ValueError(f"--ray runs one device per actor: give --device cpu or cuda, not {args.device}")
    check_out(args.out)
    options = dict(det=args.det, pose=args.pose, device=args.device, backend=args.backend, precision=args.precision,
                   batch=args.batch, det_score_threshold=args.det_threshold,
                   oks_threshold=args.oks_threshold or None, min_score=args.min_score)
    if args.crop_shape != "fit":
        options["crop_shape"] = args.crop_shape
    if args.flip:
        options["flip"] = True
    summary = infer(args.inputs, args.out, address=None if args.ray == "local" else args.ray, actors=args.ray_actors,
                    cpus_per_actor=args.ray_cpus, ann=args.ann, max_frames=args.max_frames,
                    tracker=partial(make_tracker, args) if args.track else None, overwrite=args.overwrite,
                    frames_per_unit=args.ray_frames, progress=True, **options)
    print(summary.text(), flush=True)
    if not args.no_vis and summary.merged:
        print("  renders: not written with --ray (results only)", flush=True)
    return 1 if summary.failures else 0
