#!/usr/bin/env python
"""`posekit infer --ray` from 1 to N actors on a local Ray cluster of CPU workers, against
single-process `posekit infer` on the same inputs.

  POSEKIT_MODELS=../shared/models python scripts/ray_scaling.py --out /tmp/ray-scaling \
      [--copies 4] [--video ../shared/data/mot15/TUD-Campus/TUD-Campus.mp4] [--actors 1,2] [--cpus 2]

Inputs: the shared COCO images copied --copies times (19 x copies images) and --video (its frames
split into --frames-per-unit ranges). Starts `ray.init(num_cpus=--cpus)`, builds the model cache
once (a warm-up run), then for each actor count runs `posekit.distributed.infer` into a fresh
folder (one CPU and one pipeline thread per actor) and times it:
  wall      the whole call: actor start-up (model building), planning, inference, merging
  steady    frames between the first and the last result / the time between them: start-up excluded
  actor CPU the actors' CPU time per frame (every thread of the actor processes)
  cores busy the actors' CPU seconds after the first result / the time to the last: how many cores
            the actors really had (on a machine shared with other work, fewer than they asked for)
The single-process row is `posekit.infer.infer` with its default 3 threads (no Ray). Prints a table
and writes OUT/ray_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSEKIT_SHARED", ROOT.parent / "shared"))


def make_inputs(folder: Path, copies: int) -> Path:
    images = folder / "images"
    for n in range(copies):
        target = images / f"copy{n}"
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted((SHARED / "data" / "coco-val2017-mini" / "images").glob("*.jpg")):
            shutil.copyfile(path, target / path.name)
    return images


def timed_ray(inputs: list[str], out: Path, actors: int, frames_per_unit: int) -> dict:
    from posekit import distributed

    arrivals: list[tuple[float, int, float]] = []
    start = time.perf_counter()
    summary = distributed.infer(inputs, out, actors=actors, cpus_per_actor=1, frames_per_unit=frames_per_unit,
                                on_result=lambda r: arrivals.append((time.perf_counter(), r["frames"], r["cpu_s"])))
    wall = time.perf_counter() - start
    assert not summary.failures, summary.failures
    first, last = arrivals[0][0], arrivals[-1][0]
    steady_frames = sum(a[1] for a in arrivals[1:])
    cpu = sum(a[2] for a in arrivals)
    return {"runner": f"ray, {actors} actor{'s' if actors > 1 else ''}", "actors": actors, "frames": summary.frames,
            "units": summary.units_run, "actor_processes": len(summary.actors), "wall_s": round(wall, 2),
            "frames_per_s": round(summary.frames / wall, 2),
            "steady_frames_per_s": round(steady_frames / (last - first), 2) if last > first else None,
            "actor_cpu_ms_per_frame": round(1000 * cpu / summary.frames, 1),
            "cores_busy": round(sum(a[2] for a in arrivals[1:]) / (last - first), 2) if last > first else None}


def timed_single(inputs: list[str], out: Path) -> dict:
    from posekit.infer import infer

    start = time.perf_counter()
    summary = infer(inputs, out, vis=False)
    wall = time.perf_counter() - start
    assert not summary.failures, summary.failures
    return {"runner": "single process (3 threads)", "actors": 0, "frames": summary.frames, "units": None,
            "actor_processes": 0, "wall_s": round(wall, 2), "frames_per_s": round(summary.frames / wall, 2),
            "steady_frames_per_s": None, "actor_cpu_ms_per_frame": None, "cores_busy": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--video", default=str(SHARED / "data" / "mot15" / "TUD-Campus" / "TUD-Campus.mp4"))
    parser.add_argument("--actors", default="1,2")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--frames-per-unit", type=int, default=30)
    args = parser.parse_args()

    import ray

    from posekit import __version__

    args.out.mkdir(parents=True, exist_ok=True)
    images = make_inputs(args.out / "inputs", args.copies)
    inputs = [str(images), args.video]
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
    try:
        from posekit import distributed

        distributed.infer([str(sorted(images.rglob("*.jpg"))[0])], args.out / "warmup", actors=1)  # model cache
        rows = [timed_single(inputs, args.out / "single")]
        print(rows[-1], flush=True)
        for actors in (int(a) for a in args.actors.split(",")):
            rows.append(timed_ray(inputs, args.out / f"ray-{actors}", actors, args.frames_per_unit))
            print(rows[-1], flush=True)
    finally:
        ray.shutdown()
    import onnxruntime

    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
              "cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
              "posekit": __version__, "ray": ray.__version__, "onnxruntime": onnxruntime.__version__,
              "inputs": {"images": len(list(images.rglob("*.jpg"))), "video": args.video}, "rows": rows}
    (args.out / "ray_scaling.json").write_text(json.dumps(report, indent=2))
    print(f"\n{report['date']}, {report['machine']}, {report['cpus']} CPUs, load {report['load_average']}")
    print(f"{'runner':<28} {'frames':>6} {'units':>5} {'wall s':>7} {'frames/s':>8} {'steady frames/s':>15} "
          f"{'actor CPU ms/frame':>18} {'cores busy':>10}")
    for r in rows:
        print(f"{r['runner']:<28} {r['frames']:>6} {r['units'] or '-':>5} {r['wall_s']:>7} {r['frames_per_s']:>8} "
              f"{r['steady_frames_per_s'] or '-':>15} {r['actor_cpu_ms_per_frame'] or '-':>18} {r['cores_busy'] or '-':>10}")


if __name__ == "__main__":
    main()
