#!/usr/bin/env python
"""The product at engine speed: what users run (`posekit infer` / `track` on a video) against the
engine-only pipeline, on the same video, in one run.

  POSEKIT_MODELS=.gpu/models python scripts/gpu_product.py --video .gpu/demo.mp4 --frames 3000 \
      --out $OUT/product [--device cuda --backend inductor --precision fp16] [--profile]

Makes a FRAMES-frame 960x540 video by looping --video (OpenCV, mp4v), then measures:
  engine     the estimator's device pipeline alone (`GpuPosePipeline.stream`: threaded decode,
             chunks to the device, poses back to the host), no scoring, no output
  library    `estimator.stream` (adds person scores and pose NMS)
  infer      `python -m posekit infer VIDEO --no-vis` as a subprocess, on the whole video and on
             its first tenth: steady frames/s = (N - N/10) / (T_N - T_N/10), so start-up and
             compilation cancel out, and start-up = T_N/10 - (N/10) / steady
  track      `python -m posekit track VIDEO` likewise
Each subprocess runs twice on the short video first, so the Inductor cache is warm (the second's
start-up is the warm-cache start-up). Results go to OUT/product.json, written after each step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", flush=True)


def make_video(source: str, frames: int, path: Path) -> Path:
    import cv2

    cap = cv2.VideoCapture(source)
    loop = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        loop.append(frame)
    cap.release()
    h, w = loop[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    for i in range(frames):
        writer.write(loop[i % len(loop)])
    writer.release()
    return path


def frames_of(path: Path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


def timed_command(args: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "posekit", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"posekit {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return seconds, result.stdout + result.stderr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", required=True)
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--out", required=True, help="where product.json and the logs go")
    p.add_argument("--work", default="/tmp/posekit-product", help="scratch folder: the videos and the commands' outputs")
    p.add_argument("--device", default="cuda")
    p.add_argument("--backend", default="inductor")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--profile", action="store_true", help="also cProfile `estimator.stream` in this process")
    p.add_argument("--skip", default="", help="comma-separated steps to skip: engine,library,infer,track")
    args = p.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"frames": args.frames, "device": args.device, "backend": args.backend, "precision": args.precision}

    def save() -> None:
        tmp = out / ".product.json.part"
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(out / "product.json")

    try:
        import torch
        report["torch"] = torch.__version__
        report["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        report["gpus"] = torch.cuda.device_count()
    except Exception as exc:  # noqa: BLE001
        report["torch"] = repr(exc)
    skip = set(args.skip.split(","))
    long_video = make_video(args.video, args.frames, work / "long.mp4")
    short_n = max(1, args.frames // 10)
    short_video = make_video(args.video, short_n, work / "short.mp4")
    log(f"videos: {args.frames} and {short_n} frames")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(work / "inductor-cache"))
    env["TORCHINDUCTOR_CACHE_DIR"] = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    options = ["--device", args.device, "--backend", args.backend, "--precision", args.precision]

    from posekit.estimators import make_estimator

    t0 = time.perf_counter()
    estimator = make_estimator(device=args.device, backend=args.backend, precision=args.precision)
    report["in_process_startup_s"] = round(time.perf_counter() - t0, 2)
    log(f"estimator ready in {report['in_process_startup_s']} s")
    if "engine" not in skip:
        pipe = estimator.pipeline
        n = sum(1 for _ in pipe.stream(frames_of(short_video), estimator.frames_per_batch))  # warm
        t0 = time.perf_counter()
        n = sum(1 for _ in pipe.stream(frames_of(long_video), estimator.frames_per_batch))
        seconds = time.perf_counter() - t0
        report["engine"] = {"frames": n, "seconds": round(seconds, 2), "frames_per_s": round(n / seconds, 1)}
        log(f"engine-only: {report['engine']}")
        save()
    if "library" not in skip:
        t0 = time.perf_counter()
        people = 0
        n = 0
        for poses in estimator.stream(frames_of(long_video)):
            n += 1
            people += len(poses)
        seconds = time.perf_counter() - t0
        report["library"] = {"frames": n, "seconds": round(seconds, 2), "frames_per_s": round(n / seconds, 1),
                             "people_per_frame": round(people / max(n, 1), 2)}
        log(f"library stream: {report['library']}")
        save()
    if args.profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for _ in estimator.stream(frames_of(short_video)):
            pass
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
        (out / "profile-stream.txt").write_text(text.getvalue())
    del estimator
    for command, extra in (("infer", ["--no-vis"]), ("track", [])):
        if command in skip:
            continue
        try:
            runs = {}
            for label, video in (("warm-cache-1", short_video), ("short", short_video), ("long", long_video)):
                seconds, text = timed_command(["-v", command, str(video), "--out",
                                               str(work / f"{command}-{label}"), "--overwrite", *extra, *options], env)
                runs[label] = round(seconds, 2)
                with open(out / "commands.log", "a") as f:
                    f.write(f"===== posekit {command} {label} ({seconds:.1f} s)\n{text[-6000:]}\n")
                log(f"{command} {label}: {seconds:.1f} s")
            steady = (args.frames - short_n) / (runs["long"] - runs["short"])
            report[command] = {**runs, "steady_frames_per_s": round(steady, 1),
                               "startup_s": round(runs["short"] - short_n / steady, 2),
                               "whole_video_frames_per_s": round(args.frames / runs["long"], 1)}
            log(f"{command}: {report[command]}")
        except Exception as exc:  # noqa: BLE001
            report[command] = {"error": str(exc)[-3000:]}
            log(f"{command} failed: {exc}")
        save()
    if "engine" in report and "infer" in report and "steady_frames_per_s" in report["infer"]:
        report["infer_vs_engine"] = round(report["infer"]["steady_frames_per_s"] / report["engine"]["frames_per_s"], 3)
    save()
    log(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
