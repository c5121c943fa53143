"""Benchmark a stage of posekit and print a table.

--stage models times and scores every registered detector + pose combination (and each
bottom-up model) in one run, against the plain loop: images/s, CPU ms per person, AP on detected
and on annotated boxes, and an AP-versus-speed plot (--plot).

--stage pipeline times posekit's whole pipeline against the plain per-person loop (RTMDet-nano,
then each crop alone through Google's MoveNet graph) on the same images, in one run, and
reports images/s and COCO keypoint AP for both.

--stage serve starts `posekit serve` on 127.0.0.1 once per --serve-batches setting, drives it
with --clients concurrent clients for --requests requests, and reports images/s and p50/p95/p99
latency, against the same estimator called in a loop (and its threaded stream) in one process.

--stage product times what users run, `posekit infer VIDEO --no-vis` and `posekit track VIDEO` as
commands, against the engine-only pipeline and `estimator.stream` in this process, on --video
looped to --frames frames (and with --images DIR, `posekit infer DIR --no-vis` against the
estimator on the same photos): steady frames/s, start-up and compile seconds apart, and each
row's ratio to the engine. Each command runs on the whole input and on its first tenth: steady =
(N - N/10) / (T_N - T_N/10), start-up = T_N/10 - (N/10) / steady. For the all-torch pipeline
(--backend torch/inductor) engine-only is `estimator.pipeline.stream`; for the onnxruntime
`PoseEstimator`, which has none, `estimator.stream` on frames already decoded in memory. The
commands' output goes to commands.log beside --json; the JSON is rewritten after every step.
On a GPU: posekit bench --stage product --video demo.mp4 --device cuda --backend inductor
--precision fp16 --json product/product.json

--stage track scores posekit's tracker, a greedy IoU tracker and ByteTrack (supervision, when
installed: `pip install 'posekit[bench]'`) on the same detections of MOTChallenge sequences
(MOTA, IDF1, HOTA, IDSW, FP, FN, ms/frame), and times each tracker alone at --people a frame.
"""

from __future__ import annotations

import argparse


def _bench_pipeline(args: argparse.Namespace) -> dict:
    from posekit.baseline import bench_pipeline
    from posekit.pipeline import PoseEstimator

    # One posekit row per detector threshold, pose-model precision (fp32: the float ONNX; int8:
    # the cached INT8 build; none given: the model's default) and crop shape, all timed in the same
    # run as the plain loop.
    precisions = args.precisions.split(",") if args.precisions else [None]
    shapes = args.crop_shapes.split(",")
    estimators = {}
    for threshold in args.det_threshold:
        for precision in precisions:
            for shape in shapes:
                label = "posekit"
                if len(args.det_threshold) > 1 and threshold is not None:
                    label += f" det>={threshold:g}"
                if precision is not None:
                    label += f" {precision}"
                if len(shapes) > 1 or shape != "fit":
                    label += f" {shape}"
                models = {k: v for k, v in (("det", args.det), ("pose", args.pose)) if v}
                estimators[label] = PoseEstimator(**models, workers=args.workers,
                                                  det_score_threshold=threshold, precision=precision,
                                                  crop_shape=shape)
    return bench_pipeline(args.images, args.ann, estimators, repeat=args.repeat)


def _print_pipeline(report: dict) -> None:
    names = [k for k, v in report.items() if isinstance(v, dict) and "images_per_s" in v]
    rows = [("", "images/s", "speed-up", "CPU ms/image", "AP", "AP50", "people")]
    for name in names:
        r = report[name]
        rows.append((name, f"{r['images_per_s']:.2f}", f"{r.get('speedup', 1.0):.2f}x", f"{r['cpu_ms_per_image']:.0f}",
                     f"{r.get('AP', float('nan')):.3f}",
                     f"{r.get('AP50', float('nan')):.3f}", str(r["people"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    print(f"{report['images']} images, fastest of {report['repeat']} passes each; {report['machine']}")


def _bench_engines(args: argparse.Namespace) -> dict:
    from posekit.benchmark import run_stage_benchmark

    if args.ann is None:
        raise ValueError(f"--stage {args.stage} cuts its inputs from annotated images: pass --ann")
    options = {"onnxruntime": {"threads": args.threads}} if args.threads else {}
    rows = run_stage_benchmark(args.stage, args.model, args.backends.split(","), (args.precisions or "fp32").split(","),
                               [int(b) for b in args.batches.split(",")], args.device, args.ann,
                               repeat=args.repeat_calls, engine_options=options)
    return {"rows": rows}


def _print_engines(report: dict) -> None:
    from posekit.benchmark import format_table

    print(format_table(report["rows"]))


def _bench_models(args: argparse.Namespace) -> dict:
    from posekit import registry
    from posekit.model_bench import bench_models

    if args.ann is None:
        raise ValueError("--stage models scores AP: pass --ann (COCO keypoint annotations of --images)")
    dets = args.dets.split(",") if args.dets else registry.names("detector")
    dets = [d for d in dets if args.dets or not d.startswith("yolox-") or d == "yolox-nano"]  # the larger YOLOX sizes have no weights here
    poses = args.poses.split(",") if args.poses else registry.names("pose")
    backend = args.backends.split(",")[0].split(":")[0]
    default_precisions = "int8,fp32" if backend == "onnxruntime" else "fp32"
    report = bench_models(args.images, args.ann, dets, poses, (args.precisions or default_precisions).split(","),
                          repeat=args.repeat, workers=args.workers, backend=backend, device=args.device)
    if args.plot:
        from posekit.model_bench import write_plot

        write_plot(report, args.plot)
    return report


def _print_models(report: dict) -> None:
    from posekit.model_bench import format_rows

    print(format_rows(report))
    print(f"{report['images']} images, fastest of {report['repeat']} passes each; {report['machine']}")


def _bench_track(args: argparse.Namespace) -> dict:
    from posekit.cli import build_parser
    from posekit.commands import make_estimator
    from posekit.tracking.benchmark import bench_tracking

    if not args.sequences:
        raise ValueError("--stage track scores MOTChallenge sequences: pass --sequences DIR [DIR ...]")

    def estimator():  # what `posekit track` runs by default, with this command's --det and --pose
        models = [*(["--det", args.det] if args.det else []), *(["--pose", args.pose] if args.pose else [])]
        track_args = build_parser().parse_args(["track", "-", "--out", "-", *models])
        return make_estimator(track_args, det_score_threshold=track_args.det_threshold,
                              oks_threshold=track_args.oks_threshold or None)

    return bench_tracking(args.sequences, estimator, cache=args.detections, people=args.people)


def _print_track(report: dict) -> None:
    from posekit.tracking.benchmark import format_report

    print(format_report(report))


def _bench_serve(args: argparse.Namespace) -> dict:
    from posekit.serve.bench import bench_serve

    backend, _, precision = args.backends.split(",")[0].partition(":")  # e.g. --backends inductor:fp16
    return bench_serve(args.images, [int(b) for b in args.serve_batches.split(",")], clients=args.clients,
                       requests=args.requests, max_wait_ms=args.max_wait_ms, workers=args.workers, det=args.det,
                       pose=args.pose, max_seconds=args.max_seconds, device=args.device, backend=backend,
                       precision=precision or None)


def _print_serve(report: dict) -> None:
    from posekit.serve.bench import format_rows

    print(format_rows(report))


def _bench_product(args: argparse.Namespace) -> dict:
    import shlex

    from posekit.product_bench import bench_product

    return bench_product(args.video, frames=args.frames, images=args.images, device=args.device,
                         backend=args.backend, precision=args.precision, det=args.det, pose=args.pose,
                         commands=[c for c in args.commands.split(",") if c],
                         infer_args=shlex.split(args.infer_args), track_args=shlex.split(args.track_args),
                         work=args.work, json_path=args.json, warm_runs=args.warm_runs,
                         repeat=args.repeat)


def _print_product(report: dict) -> None:
    from posekit.product_bench import format_table

    print(format_table(report))


# stage -> (run(args) -> report, print(report)); other stages register here.
STAGES = {
    "pipeline": (_bench_pipeline, _print_pipeline),
    "models": (_bench_models, _print_models),
    "det": (_bench_engines, _print_engines),
    "pose": (_bench_engines, _print_engines),
    "track": (_bench_track, _print_track),
    "serve": (_bench_serve, _print_serve),
    "product": (_bench_product, _print_product),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from posekit.cli import non_negative_int, positive_int

    p.add_argument("--stage", choices=sorted(STAGES), default="pipeline", help="what to time (default %(default)s)")
    p.add_argument("--images", metavar="DIR", help="folder of images to time on (every stage but track; optional for product: "
                                                "adds `posekit infer DIR` against the estimator on them)")
    p.add_argument("--ann", metavar="JSON",
                   help="COCO keypoint annotations for AP (default: the one .json beside the images folder)")
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed passes; the fastest counts (default 3; --stage product: runs of each command on each "
                        "input, default 1, as each run pays the command's start-up)")
    p.add_argument("--det", default=None, help="posekit's detector (default: posekit's, picodet-s-320-pedestrian)")
    p.add_argument("--pose", default=None, help="posekit's pose model (default: posekit's, tinypose-256x192)")
    p.add_argument("--workers", type=int, default=3, help="posekit's worker threads (default %(default)s)")
    p.add_argument("--det-threshold", type=float, nargs="+", default=[None], metavar="T",
                   help="posekit's detector score threshold; several values time one posekit row each "
                        "(default: the detector's own, 0.35 for PicoDet, 0.2 for the others)")
    p.add_argument("--crop-shapes", default="fit", metavar="S",
                   help="posekit's crop shapes, comma-separated, one posekit row each: fit (shaped like the "
                        "person) or square (default %(default)s)")
    models = p.add_argument_group("--stage models (every detector + pose combination, and each bottom-up model)")
    models.add_argument("--dets", metavar="A,B", help="detectors to combine (default: every registered one but the "
                                                      "larger YOLOX sizes)")
    models.add_argument("--poses", metavar="A,B", help="pose models (default: every registered one); the backend is "
                                                       "the first of --backends (e.g. --backends torch --device cuda "
                                                       "for the all-GPU pipeline: detectors and pose models with torch "
                                                       "networks)")
    engines = p.add_argument_group("--stage det / pose (engines on real crops / frames cut from --images)")
    engines.add_argument("--model", help="registry name (default: movenet-thunder for pose, rtmdet-nano-person for det)")
    engines.add_argument("--backends", default="onnxruntime",
                         help="comma-separated BACKEND[:PRECISION]; the first is the reference (default %(default)s)")
    engines.add_argument("--precisions",
                         help="for backends given without one (default fp32); with --stage pipeline, the "
                              "pose model's precisions, one posekit row each, e.g. int8,fp32 (default: the "
                              "model's CPU default); with --stage models, default int8,fp32")
    engines.add_argument("--batches", default="1,8", help="batch sizes (default %(default)s)")
    engines.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default %(default)s; also --stage "
                                                          "models and product)")
    engines.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    engines.add_argument("--repeat-calls", type=int, default=20, help="timed calls per row; the median counts")
    engines.add_argument("--csv", metavar="PATH", help="also write the rows as CSV")
    engines.add_argument("--plot", metavar="PNG", help="also plot throughput vs batch, or with --stage models AP vs "
                                                       "images/s (needs matplotlib)")
    serve = p.add_argument_group("--stage serve (`posekit serve` on 127.0.0.1 under load, against the estimator in one "
                                 "process; --device and the first of --backends, e.g. --device cuda --backends "
                                 "inductor:fp16, pick the server's engine)")
    serve.add_argument("--serve-batches", default="1,4,8", metavar="A,B",
                       help="server --max-batch settings, one row each (default %(default)s)")
    serve.add_argument("--clients", type=int, default=8, help="concurrent clients (default %(default)s)")
    serve.add_argument("--requests", type=int, default=200, help="timed requests per row (default %(default)s)")
    serve.add_argument("--max-wait-ms", type=float, default=10.0, help="server --max-wait-ms (default %(default)s)")
    serve.add_argument("--max-seconds", type=float, default=120.0, help="stop a row after this long (default %(default)s)")
    product = p.add_argument_group("--stage product (`posekit infer` / `track` as commands against the engine-only "
                                   "pipeline, in one run; also takes --images DIR, --det, --pose, --device, --json)")
    product.add_argument("--video", metavar="FILE", help="the clip to loop into a --frames-frame video (mp4v)")
    product.add_argument("--frames", type=positive_int, default=3000, help="frames of the looped video; the short "
                         "runs take a tenth (default %(default)s)")
    product.add_argument("--backend", default=None, metavar="NAME",
                         help="the commands' --backend (default: posekit infer's, onnxruntime)")
    product.add_argument("--precision", default=None, metavar="P",
                         help="the commands' --precision (default: posekit infer's for the backend and device)")
    product.add_argument("--commands", default="infer,track", metavar="A,B",
                         help="commands to time on the video (default %(default)s)")
    product.add_argument("--infer-args", default="", metavar="ARGS",
                         help="more arguments for infer (it always gets --no-vis), e.g. --infer-args=--track")
    product.add_argument("--track-args", default="", metavar="ARGS",
                         help="more arguments for track, e.g. --track-args=--no-video (note the =)")
    product.add_argument("--warm-runs", type=non_negative_int, default=None, metavar="K",
                         help="untimed short runs of each command first (default: 1 for --backend inductor, so "
                              "the timed runs find the kernel cache warm; 0 otherwise)")
    product.add_argument("--work", metavar="DIR", help="scratch folder for the videos and the commands' outputs, "
                                                       "kept (default: a temporary folder, removed)")
    track = p.add_argument_group("--stage track (trackers on the same detections of MOTChallenge sequences)")
    track.add_argument("--sequences", nargs="+", metavar="DIR",
                       help="sequence folders, each with gt/gt.txt, seqinfo.ini and <name>.mp4")
    track.add_argument("--detections", metavar="DIR",
                       help="keep each sequence's detections here and reuse them on later runs")
    track.add_argument("--people", type=int, default=20,
                       help="also time each tracker alone at this many people a frame; 0 skips (default 20)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from posekit.io import write_json

    if args.stage not in ("track", "product") and not args.images:
        raise ValueError(f"--stage {args.stage} times on images: pass --images DIR")
    if args.stage != "product" and (args.backend or args.precision):
        # before --stage product had its own, these abbreviated --backends / --precisions
        raise ValueError(f"--stage {args.stage} takes --backends and --precisions (--backend and --precision "
                         f"are --stage product's)")
    if args.ann is None and args.images:
        found = sorted(Path(args.images).resolve().parent.glob("*.json"))
        args.ann = str(found[0]) if len(found) == 1 else None
    if args.repeat is None:
        args.repeat = 1 if args.stage == "product" else 3
    run_stage, print_stage = STAGES[args.stage]
    report = run_stage(args)
    print_stage(report)
    if args.json:  # --stage product also wrote it after every step
        write_json(args.json, report)
    if getattr(args, "csv", None) and "rows" in report:
        from posekit.benchmark import write_csv

        write_csv(report["rows"], args.csv)
    if getattr(args, "plot", None) and "rows" in report and args.stage != "models":
        from posekit.benchmark import write_plot

        write_plot(report["rows"], args.plot)
    return 1 if report.get("errors") else 0
