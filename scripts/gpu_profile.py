#!/usr/bin/env python
"""Where the GPU pipeline's time goes, stage by stage, for one or more engine settings.

  POSEKIT_MODELS=.gpu/models python scripts/gpu_profile.py --video .gpu/demo.mp4 --out $OUT/profile \
      [--configs "inductor:128,512,1024;inductor:64,256@128"] [--precision fp16] [--frames-per-batch 64]

For each setting (a GpuPosePipeline backend; "inductor:128,512,1024" names the static pose batch
sizes of the torch.compile engine): the time to build it, the device alone on chunks already in
GPU memory (frames/s), each stage of one chunk (synchronised: letterbox + detector + NMS, crops,
pose network, decoding), and `stream` over decoded frames held in memory and over the video file
(decoding included). Also OpenCV's decoding rate alone. Results go to OUT/profile.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", flush=True)


def video_frames(path: str, count: int) -> list:
    """The first `count` frames of `path` looped (decoded once), in memory."""
    from posekit.io import iter_video

    frames = [frame.image for frame in iter_video(path, max_frames=count)]
    return [frames[i % len(frames)] for i in range(count)]


def decode_rate(path: str, count: int) -> dict:
    import cv2

    cap = cv2.VideoCapture(path)
    n, t0 = 0, time.perf_counter()
    while n < count:
        ok, _ = cap.read()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(path)
            continue
        n += 1
    seconds = time.perf_counter() - t0
    cap.release()
    return {"frames": n, "frames_per_s": round(n / seconds, 1)}


def timed(fn, sync, repeat: int = 5) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def profile(config: str, args, frames: list) -> dict:
    import numpy as np
    import torch

    from posekit.gpu_pipeline import GpuPosePipeline, crop_people, crop_windows

    config, _, per_batch = config.partition("@")
    backend, _, sizes = config.partition(":")
    options = {}
    fpb = int(per_batch or args.frames_per_batch)
    if backend == "inductor":
        pose_sizes = "dynamic" if sizes == "dynamic" else tuple(int(s) for s in (sizes or "128,512").split(","))
        options = dict(det_batch_sizes=(fpb,), pose_batch_sizes=pose_sizes)
    elif backend == "aotinductor":
        options = dict(det_batch_sizes=(fpb,), pose_batch_sizes=(fpb * 32,))
    t0 = time.perf_counter()
    pipe = GpuPosePipeline(device=args.device, backend=backend, precision=args.precision, **options)
    built = time.perf_counter() - t0
    warm = pipe.warmup()
    row: dict = {"config": config, "frames_per_batch": fpb, "build_s": round(built, 2), "warmup_s": round(warm, 2)}
    log(f"{config}: built in {built:.1f} s, warm-up {warm:.1f} s")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    chunks = [torch.from_numpy(np.stack(frames[i : i + fpb])).to(args.device) for i in range(0, 8 * fpb, fpb)]

    def device_only():
        for c in chunks:
            pipe.run_device(c)
    seconds = pipe.on_device(timed, device_only, sync, 3)
    row["device_frames_per_s"] = round(len(chunks) * fpb / seconds, 1)

    def stages():
        c = chunks[0]
        out = {}
        sync()
        t = time.perf_counter()
        boxes, scores, index = pipe.detect_device(c)
        sync()
        out["detect_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        size = pipe.pose_spec.input_size
        volume = c.permute(3, 0, 1, 2).to(pipe.dtype)
        s, origins = crop_windows(boxes.float(), size, pipe.crop_scale)
        crops = pipe._pose_input(crop_people(volume, index, s, origins, size))
        sync()
        out["crops_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        heads = pipe.pose_family.named(pipe.pose_engine(crops), pipe.pose_engine.output_names)
        sync()
        out["pose_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        pipe._decode(heads, size)
        sync()
        out["decode_ms"] = (time.perf_counter() - t) * 1e3
        out["crops"] = int(boxes.shape[0])
        return out

    with torch.inference_mode():
        pipe.on_device(stages)
        runs = [pipe.on_device(stages) for _ in range(5)]
    row["stages"] = {k: round(float(np.median([r[k] for r in runs])), 2) for k in runs[0]}
    # the pose network alone at a few batch sizes (crops/s)
    pose_rates = {}
    for n in (args.pose_batches or "256,663,1024").split(","):
        x = torch.zeros((int(n), 3, *pipe.pose_spec.input_size), device=args.device, dtype=pipe.dtype)
        with torch.inference_mode():
            sec = pipe.on_device(timed, lambda: pipe.pose_engine(x), sync, 5)
        pose_rates[n] = round(int(n) / sec, 0)
    row["pose_crops_per_s"] = pose_rates
    log(f"{config}: device {row['device_frames_per_s']} frames/s, stages {row['stages']}, pose {pose_rates}")
    for label, source in (("stream_memory", lambda: iter(frames)), ("stream_video", None)):
        if source is None:
            from posekit.io import VideoReader

            def source():
                with VideoReader(args.long_video) as reader:
                    for frame in reader:
                        yield frame.image
        n = sum(1 for _ in pipe.stream(source(), fpb))  # warm
        t0 = time.perf_counter()
        n = sum(1 for _ in pipe.stream(source(), fpb))
        row[label] = round(n / (time.perf_counter() - t0), 1)
        log(f"{config}: {label} {row[label]} frames/s ({n} frames)")
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--configs", default="inductor:64,256",
                   help="settings separated by ;, each BACKEND[:POSE_SIZES][@FRAMES_PER_BATCH], e.g. inductor:64,256@128")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--device", default="cuda")
    p.add_argument("--frames-per-batch", type=int, default=64)
    p.add_argument("--frames", type=int, default=1280, help="frames for the stream rows")
    p.add_argument("--pose-batches", default=None)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    report: dict = {"torch": torch.__version__, "rows": [],
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    frames = video_frames(args.video, args.frames)
    from posekit.product_bench import make_looped_video

    args.long_video = str(make_looped_video(args.video, args.frames, out / "long.mp4"))
    report["decode"] = decode_rate(args.long_video, args.frames)
    log(f"decode alone: {report['decode']}")

    def save() -> None:
        (out / "profile.json").write_text(json.dumps(report, indent=2))
    for config in args.configs.split(";"):
        try:
            report["rows"].append(profile(config, args, frames))
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001
            import traceback

            report["rows"].append({"config": config, "error": traceback.format_exc()[-3000:]})
            log(f"{config} failed: {exc}")
        save()
    (Path(args.long_video)).unlink(missing_ok=True)
    log(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
