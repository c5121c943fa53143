#!/usr/bin/env python
"""GPU benchmark for the lead: pose stage, detector stage, whole GPU pipeline, accuracy.

  python scripts/gpu_bench.py --models .gpu/models --coco .gpu/coco-val2017-mini \
      --video .gpu/demo.mp4 --out $OUT/gpu-bench [--budget 480]

Needs only the repository, the folders named by the arguments (the shared models, the COCO mini
set with images/ and its JSON, the demo video) and torch (CUDA), onnx, onnxruntime (CPU), opencv.
Writes results.json (after every measurement, atomically), results.md and CSVs under --out, and
prints progress unbuffered. Every measurement runs in its own try/except (a failure is recorded
and the script goes on); a total time budget (compile time included) skips what no longer fits.

Sections:
  (a) pose stage, MoveNet-Thunder, batch 1..256: torch eager FP32 vs Inductor FP16 and BF16 with
      CUDA graphs (targets: Inductor FP16 >= 4x eager FP32 throughput at batch 256; batch-1
      latency <= 1 ms)
  (b) whole pipeline YOLOX-nano + MoveNet-Thunder on the demo video's 960x540 frames repeated:
      frames/s from JPEG-encoded frames to keypoints on the host (decode on CPU threads),
      Inductor FP16 vs torch eager FP32 (target >= 10x, aim 1000 frames/s)
  (c) detector stage, YOLOX-nano, eager FP32 vs Inductor FP16
  (d) accuracy: per-output error of FP16/BF16 engines against eager FP32 on real person crops,
      and keypoint AP on the COCO mini set per engine (RTMDet boxes on CPU, pose on GPU) and for
      the whole GPU pipeline
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="folder laid out like shared/models")
    p.add_argument("--coco", required=True, help="folder with person_keypoints_val2017_mini.json and images/")
    p.add_argument("--video", required=True, help="the demo video (960x540)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--inputs", help="inputs.npz from scripts/gpu_prepare.py: used when OpenCV is not installed "
                                    "(default: inputs.npz beside --coco)")
    p.add_argument("--budget", type=float, default=480.0, help="total seconds, compile time included (default 480)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batches", default="1,2,4,8,16,32,64,128,256", help="pose-stage batch sizes")
    p.add_argument("--mode", default="reduce-overhead",
                   help="torch.compile mode: reduce-overhead (CUDA graphs, no autotune: modest compile time) "
                        "or max-autotune (CUDA graphs + GEMM/conv autotuning: slower to compile)")
    p.add_argument("--pipeline-frames", type=int, default=1024, help="frames through the whole pipeline per run")
    p.add_argument("--frames-per-batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--sections", default="a,b,c,d,e", help="which sections to run, in this order")
    p.add_argument("--pose-engines", default="torch:fp32,inductor:fp16",
                   help="BACKEND:PRECISION list for (a); the first is the reference")
    p.add_argument("--late-pose-engines", default="inductor:bf16",
                   help="BACKEND:PRECISION list for section e (pose stage, run last: BF16 is the lower priority)")
    p.add_argument("--engine-budget", type=float, default=150.0,
                   help="seconds one engine may spend over all its batch sizes (compile included) before "
                        "its remaining sizes are skipped; the sizes run in order 1, largest, then the rest")
    p.add_argument("--pipeline-engines", default="torch:fp32,inductor:fp16", help="BACKEND:PRECISION list for (b)")
    p.add_argument("--det-engines", default="torch:fp32,inductor:fp16", help="BACKEND:PRECISION list for (c)")
    p.add_argument("--accuracy-engines", default="torch:fp32,torch:fp16,torch:bf16,inductor:fp16",
                   help="BACKEND:PRECISION list for (d); the first is the reference")
    return p.parse_args()


class Results:
    """Everything measured so far, rewritten atomically after each step."""

    def __init__(self, out: Path, meta: dict) -> None:
        self.out = out
        self.data: dict = {"meta": meta, "pose": [], "det": [], "pipeline": [], "accuracy": [], "ap": [],
                           "failures": [], "skipped": []}

    def add(self, section: str, row: dict) -> None:
        self.data[section].append(row)
        self.save()

    def fail(self, what: str, exc: BaseException) -> None:
        log(f"FAILED {what}: {type(exc).__name__}: {exc}")
        self.data["failures"].append({"what": what, "error": f"{type(exc).__name__}: {exc}",
                                      "traceback": traceback.format_exc()[-4000:]})
        self.save()

    def skip(self, what: str, why: str) -> None:
        log(f"skipped {what}: {why}")
        self.data["skipped"].append({"what": what, "why": why})
        self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / ".results.json.part"
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.out / "results.json")


def engines_arg(text: str) -> list[tuple[str, str]]:
    return [tuple(item.split(":", 1)) for item in text.split(",") if item]  # type: ignore[misc]


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def remaining(budget: float) -> float:
    return budget - (time.perf_counter() - START)


# --- (a) / (c): one stage ----------------------------------------------------------------------

def stage(results: Results, args, stage_name: str, model: str, batches: list[int], engines: list[tuple[str, str]],
          inputs) -> None:
    import torch

    from posekit.benchmark import add_speedups, tile, time_engine
    from posekit.runtime import make_engine

    rows = []
    for backend, precision in engines:
        label = f"{stage_name} {backend} {precision}"
        if remaining(args.budget) < 60:
            results.skip(label, f"{remaining(args.budget):.0f}s of budget left")
            continue
        try:
            t0 = time.perf_counter()
            options = {"mode": args.mode} if backend == "inductor" else {}
            engine = make_engine(model, backend, precision, args.device, batch_sizes=tuple(batches), **options)
            built = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - record and go on
            results.fail(label, exc)
            continue
        compile_seconds = 0.0
        engine_start = time.perf_counter()
        # the targets first: batch 1 (latency) and the largest (throughput), then the rest
        order = list(dict.fromkeys([min(batches), max(batches), *batches]))
        for b in order:
            if remaining(args.budget) < 30:
                results.skip(f"{label} batch {b}", "budget")
                break
            if time.perf_counter() - engine_start > args.engine_budget:
                results.skip(f"{label} batch {b}", f"engine budget of {args.engine_budget:.0f}s spent")
                continue
            try:
                x = torch.from_numpy(tile(inputs, b)).to(args.device)
                t0 = time.perf_counter()
                engine(x)  # first call at this size compiles (Inductor) and captures the CUDA graph
                synchronize(args.device)
                first = time.perf_counter() - t0
                compile_seconds += first
                timing = time_engine(engine, x, warmup=3, repeat=args.repeat, min_seconds=0.2)
                row = {"stage": stage_name, "model": model, "backend": backend, "precision": precision, "batch": b,
                       "latency_ms": timing["latency_ms"], "throughput": b / (timing["latency_ms"] / 1e3),
                       "runs": timing["runs"], "first_call_s": round(first, 2), "build_s": round(built, 2),
                       "gpu_util": _gpu_util()}
                rows.append(row)
                log(f"{label} batch {b}: {row['latency_ms']:.3f} ms, {row['throughput']:.0f}/s (first call {first:.1f}s)")
            except Exception as exc:  # noqa: BLE001
                results.fail(f"{label} batch {b}", exc)
        log(f"{label}: compile/capture {compile_seconds:.1f}s")
        del engine
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    rank = {pair: i for i, pair in enumerate(engines)}
    rows.sort(key=lambda r: (rank[(r["backend"], r["precision"])], r["batch"]))
    for row in rows:
        results.add(stage_name, row)
    add_speedups(results.data[stage_name])  # over the first engine measured in this stage (eager FP32)
    results.save()


_NVML = []


def _gpu_util():
    try:
        import pynvml

        if not _NVML:
            pynvml.nvmlInit()
            _NVML.append(pynvml.nvmlDeviceGetHandleByIndex(0))
        return float(pynvml.nvmlDeviceGetUtilizationRates(_NVML[0]).gpu)
    except Exception:  # noqa: BLE001 - NVML is optional
        return None


# --- (b): the whole pipeline -------------------------------------------------------------------

def encoded_frames(video: str, count: int) -> list[bytes]:
    import cv2

    cap = cv2.VideoCapture(video)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    cap.release()
    if not frames:
        raise ValueError(f"{video}: no frames could be read (expected a video file)")
    return [frames[i % len(frames)] for i in range(count)]


def decoded(encoded: list[bytes], threads: int):
    """Frames decoded on `threads` CPU threads (cv2.imdecode releases the GIL), in order."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    def decode(data: bytes):
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    with ThreadPoolExecutor(threads) as pool:
        yield from pool.map(decode, encoded, chunksize=8)


def prepared(args) -> dict:
    path = Path(args.inputs) if args.inputs else Path(args.coco).parent / "inputs.npz"
    if not path.is_file():
        raise FileNotFoundError(f"OpenCV is not installed and there is no {path}: run scripts/gpu_prepare.py "
                                "where OpenCV is, and copy its output beside --coco")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def real_inputs_anywhere(args, model: str, ann: Path, limit: int):
    """Real inputs in the network layout: cut with OpenCV when it is here, else from inputs.npz."""
    from posekit import registry
    from posekit.calibration import to_network_input
    from posekit.compare import real_inputs
    from posekit.runtime import network_input_spec

    try:
        import cv2  # noqa: F401
    except ImportError:
        key = "crops" if registry.get(model).task == "pose" else "det_frames"
        return to_network_input(prepared(args)[key][:limit], registry.get(model), network_input_spec(model))
    return real_inputs(model, ann, limit)


def pipeline(results: Results, args, configs: list[tuple[str, str]]) -> None:
    import torch

    from posekit.gpu_pipeline import GpuPosePipeline

    threads = max(2, (os.cpu_count() or 4) - 2)
    try:
        encoded = encoded_frames(args.video, args.pipeline_frames)
        source, what = (lambda items: decoded(items, threads)), "JPEG decoded on CPU threads"
    except ImportError:  # no OpenCV here: raw frames from inputs.npz (decode not timed)
        video = prepared(args)["video_frames"]
        encoded = [video[i % len(video)] for i in range(args.pipeline_frames)]
        source, what = (lambda items: (np.array(f) for f in items)), "raw frames (no OpenCV: decode not timed)"
        log(f"pipeline input: {what}")
    fpb = args.frames_per_batch
    for backend, precision in configs:
        label = f"pipeline {backend} {precision}"
        if remaining(args.budget) < 60:
            results.skip(label, "budget")
            continue
        try:
            t0 = time.perf_counter()
            options = {}
            if backend == "inductor":
                options = dict(mode=args.mode, det_batch_sizes=(fpb,), pose_batch_sizes=(64, 128, 256, 512))
            pipe = GpuPosePipeline(device=args.device, backend=backend, precision=precision, **options)
            # warm-up pass over enough frames to compile/capture every size the run will meet
            people = sum(len(p) for p in pipe.stream(source(encoded[: 2 * fpb]), fpb))
            synchronize(args.device)
            warm = time.perf_counter() - t0
            frames = 0
            t0 = time.perf_counter()
            for poses in pipe.stream(source(encoded), fpb):
                frames += 1
                people += len(poses)
            seconds = time.perf_counter() - t0
            row = {"backend": backend, "precision": precision, "frames": frames, "seconds": round(seconds, 3),
                   "frames_per_s": frames / seconds, "people_per_frame": people / (frames + 2 * fpb),
                   "warmup_s": round(warm, 1), "frames_per_batch": fpb, "decode_threads": threads, "input": what,
                   "gpu_util": _gpu_util()}
            results.add("pipeline", row)
            log(f"{label}: {row['frames_per_s']:.0f} frames/s ({frames} frames, {row['people_per_frame']:.1f} people/frame, warm-up {warm:.0f}s)")
            del pipe
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001
            results.fail(label, exc)
    base = next((r for r in results.data["pipeline"] if r["backend"] == "torch" and r["precision"] == "fp32"), None)
    for r in results.data["pipeline"]:
        if base:
            r["speedup"] = r["frames_per_s"] / base["frames_per_s"]
    results.save()


# --- (d): accuracy -----------------------------------------------------------------------------

def accuracy(results: Results, args, ann: Path, engines: list[tuple[str, str]], crops) -> None:
    from posekit.compare import compare_engines, engine_ap

    try:
        for row in compare_engines("movenet-thunder", engines, ann, args.device, batch=8, inputs=crops[:40]):
            results.add("accuracy", row)
        log("per-output errors done")
    except Exception as exc:  # noqa: BLE001
        results.fail("per-output errors", exc)
    for backend, precision in engines:
        if remaining(args.budget) < 40:
            results.skip(f"AP {backend} {precision}", "budget")
            continue
        try:
            row = {"what": f"pose engine {backend} {precision} (RTMDet boxes on CPU)",
                   **engine_ap("movenet-thunder", backend, precision, ann, args.device)}
            results.add("ap", row)
            log(f"AP {backend} {precision}: {row['AP']:.3f}")
        except Exception as exc:  # noqa: BLE001
            results.fail(f"AP {backend} {precision}", exc)
    gpu_precisions = ("fp32", "fp16") if args.device.startswith("cuda") else ("fp32",)
    for backend, precision in (("torch", p) for p in gpu_precisions):
        if remaining(args.budget) < 40:
            results.skip(f"AP GPU pipeline {backend} {precision}", "budget")
            continue
        try:
            results.add("ap", {"what": f"GPU pipeline (YOLOX-nano + MoveNet) {backend} {precision}",
                               **gpu_pipeline_ap(args, ann, backend, precision)})
        except Exception as exc:  # noqa: BLE001
            results.fail(f"AP GPU pipeline {backend} {precision}", exc)


def gpu_pipeline_ap(args, ann: Path, backend: str, precision: str) -> dict:
    from posekit.evaluate import coco_eval, load_annotations
    from posekit.gpu_pipeline import GpuPosePipeline
    from posekit.io import poses_to_coco, read_image

    coco = load_annotations(ann)
    pipe = GpuPosePipeline(device=args.device, backend=backend, precision=precision)
    found = []
    for image_id in sorted(coco.getImgIds()):
        entry = coco.imgs[image_id]
        poses = pipe([read_image(ann.parent / "images" / entry["file_name"])])[0]
        found.extend(poses_to_coco(poses, image_id))
    stats, _ = coco_eval(coco, found, "keypoints")
    return {"AP": stats["AP"], "AP50": stats["AP50"], "images": len(coco.getImgIds())}


# --- report ------------------------------------------------------------------------------------

def markdown(data: dict) -> str:
    from posekit.benchmark import format_table
    from posekit.compare import format_table as plain_table

    parts = [f"# GPU benchmark\n\n{json.dumps(data['meta'])}\n"]
    for section, title in (("pose", "(a) pose stage"), ("det", "(c) detector stage")):
        if data[section]:
            parts.append(f"## {title}\n\n```\n{format_table(data[section])}\n```\n")
    if data["pipeline"]:
        parts.append("## (b) whole pipeline\n\n```\n" + plain_table(
            data["pipeline"], ["backend", "precision", "frames", "seconds", "frames_per_s", "speedup",
                               "people_per_frame", "warmup_s", "gpu_util"]) + "\n```\n")
    if data["accuracy"]:
        parts.append("## (d) per-output error vs torch eager FP32 (real crops)\n\n```\n" + plain_table(
            data["accuracy"], ["backend", "precision", "output", "max_abs", "mean_abs", "max_rel",
                               "kp_px_median", "kp_px_p95", "kp_within_2px"]) + "\n```\n")
    if data["ap"]:
        parts.append("## (d) keypoint AP, COCO val2017 mini (19 images)\n\n```\n" + plain_table(
            data["ap"], ["what", "AP", "AP50", "AP_gt_boxes", "images"]) + "\n```\n")
    for key in ("failures", "skipped"):
        if data[key]:
            parts.append(f"## {key}\n\n" + "\n".join(f"- {f.get('what')}: {f.get('error', f.get('why'))}"
                                                       for f in data[key]) + "\n")
    return "\n".join(parts)


def main() -> int:
    args = parse_args()
    out = Path(args.out)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", "/tmp/posekit-inductor-cache")
    os.environ["POSEKIT_MODELS"] = str(Path(args.models).resolve())
    # every Inductor engine the sections build (accuracy and AP ones too) uses --mode
    os.environ["POSEKIT_INDUCTOR_MODE"] = args.mode
    os.environ.setdefault("POSEKIT_CACHE", "/tmp/posekit-gpu-cache")
    sys.path.insert(0, str(ROOT))

    import torch

    meta = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
            "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available() else args.device,
            "mode": args.mode, "budget_s": args.budget}
    results = Results(out, meta)
    log(f"start: {meta}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        results.fail("setup", RuntimeError("no CUDA device"))
        return 1
    torch.backends.cudnn.benchmark = args.device.startswith("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    ann = Path(args.coco) / "person_keypoints_val2017_mini.json"
    batches = [int(b) for b in args.batches.split(",")]
    sections = args.sections.split(",")
    try:
        crops = real_inputs_anywhere(args, "movenet-thunder", ann, limit=64)
        frames = real_inputs_anywhere(args, "yolox-nano", ann, limit=19)
    except Exception as exc:  # noqa: BLE001
        results.fail("loading real inputs", exc)
        return 1
    for section in sections:
        try:
            if section == "a":
                stage(results, args, "pose", "movenet-thunder", batches, engines_arg(args.pose_engines), crops)
            elif section == "b":
                pipeline(results, args, engines_arg(args.pipeline_engines))
            elif section == "c":
                stage(results, args, "det", "yolox-nano", [b for b in (1, 8, 32, 64) if b <= max(batches)],
                      engines_arg(args.det_engines), frames)
            elif section == "e":
                stage(results, args, "pose", "movenet-thunder", batches, engines_arg(args.late_pose_engines), crops)
            elif section == "d":
                accuracy(results, args, ann, engines_arg(args.accuracy_engines), crops)
        except Exception as exc:  # noqa: BLE001
            results.fail(f"section {section}", exc)
    (out / "results.md").write_text(markdown(results.data))
    try:
        from posekit.benchmark import write_csv, write_plot

        write_csv(results.data["pose"] + results.data["det"], out / "stages.csv")
        write_plot(results.data["pose"] + results.data["det"], out / "throughput.png")
    except Exception as exc:  # noqa: BLE001 - the plot needs matplotlib; the rest is written
        log(f"no plot/CSV: {exc}")
    log(f"done; wrote {out / 'results.json'} and {out / 'results.md'}")
    print(markdown(results.data), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
