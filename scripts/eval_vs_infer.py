"""`posekit eval` against `posekit infer --no-vis` on the same images, and eval's peak memory on a
large folder: the product benchmark for issue 10's CPU targets (eval <= 1.1x infer's wall time on
the shared val set copied 8 times; eval's peak RSS < 1 GB on 2,000 images).

    python scripts/eval_vs_infer.py [--copies 8] [--large 2000] [--repeat 1] [--json out.json]

Each command runs as a subprocess, as a user runs it (`python -m posekit ...`), with the same
model cache, warmed first by one `posekit infer` on one image. The copies are real files in a
temporary folder (the large set links to them), annotated like their originals. Wall time
includes start-up (imports, model loading) for every command alike. Peak RSS is the eval
process's own (`os.wait4`), in MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSEKIT_SHARED", ROOT.parent / "shared"))
COCO = SHARED / "data" / "coco-val2017-mini"
ANN = COCO / "person_keypoints_val2017_mini.json"
IMAGES = COCO / "images"


def annotated_copies(folder: Path, n: int, link_to: Path | None = None) -> Path:
    """`n` images in `folder` (copies of the shared ones in turn, or links to those in `link_to`)
    and an annotation file that annotates each like its original."""
    data = json.loads(ANN.read_text())
    by_image: dict[int, list] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    folder.mkdir(parents=True)
    images, annotations = [], []
    for i in range(n):
        entry = data["images"][i % len(data["images"])]
        name = f"{i:06d}.jpg"
        if link_to is None:
            shutil.copyfile(IMAGES / entry["file_name"], folder / name)
        else:
            os.symlink(link_to / f"{i % len(data['images']):06d}.jpg", folder / name)
        images.append({**entry, "id": i + 1, "file_name": name})
        annotations += [{**a, "id": len(annotations) + 1, "image_id": i + 1} for a in by_image.get(entry["id"], [])]
    ann = folder.parent / f"{folder.name}.json"
    ann.write_text(json.dumps({**data, "images": images, "annotations": annotations}))
    return ann


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and the last output line of `python -m posekit ARGS`."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "posekit", *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"posekit {' '.join(args)} failed ({process.returncode}):\n{out[-2000:]}")
    last = [line for line in out.splitlines() if line.strip()][-1]
    return seconds, usage.ru_maxrss / 1024, last


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=8, help="copies of the 19 shared images timed (default %(default)s)")
    p.add_argument("--large", type=int, default=2000, help="images for the peak-memory run; 0 skips it (default %(default)s)")
    p.add_argument("--repeat", type=int, default=1, help="timed runs of each command, alternating (default %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write the measurements here")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="posekit-eval-vs-infer-"))
    env = {**os.environ, "POSEKIT_MODELS": os.environ.get("POSEKIT_MODELS", str(SHARED / "models")),
           "POSEKIT_CACHE": os.environ.get("POSEKIT_CACHE", str(work / "cache")),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        n = 19 * args.copies
        ann = annotated_copies(work / "images", n)
        run(["infer", str(work / "images" / "000000.jpg"), "--out", str(work / "warm"), "--no-vis"], env)  # fills the cache
        commands = {
            "infer --no-vis": ["infer", str(work / "images"), "--out", str(work / "out"), "--no-vis", "--overwrite"],
            "eval": ["eval", "--ann", str(ann), "--images", str(work / "images")],
            "eval --boxes both": ["eval", "--ann", str(ann), "--images", str(work / "images"), "--boxes", "both"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        rss: dict[str, float] = {}
        notes: dict[str, str] = {}
        for _ in range(args.repeat):
            for name, command in commands.items():
                seconds, peak, last = run(command, env)
                times[name].append(seconds)
                rss[name] = max(rss.get(name, 0.0), peak)
                notes[name] = last
        best = {name: min(values) for name, values in times.items()}
        rows = [(f"{name} ({n} images)", best[name], best[name] / best["infer --no-vis"], rss[name], notes[name])
                for name in commands]
        large = None
        if args.large:
            big_ann = annotated_copies(work / "large", args.large, link_to=work / "images")
            seconds, peak, last = run(["eval", "--ann", str(big_ann), "--images", str(work / "large"), "--boxes", "both"], env)
            large = {"images": args.large, "seconds": seconds, "peak_rss_mb": peak}
            rows.append((f"eval --boxes both ({args.large} images)", seconds, None, peak, last))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; best of {args.repeat} run(s)")
    print(f"{'command':40} {'wall s':>8} {'x infer':>8} {'peak RSS MB':>12}  last line")
    for name, seconds, ratio, peak, last in rows:
        print(f"{name:40} {seconds:8.1f} {'' if ratio is None else f'{ratio:8.2f}':>8} {peak:12.0f}  {last[:70]}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "images": n, "repeat": args.repeat, "times": times, "peak_rss_mb": rss, "large": large,
            "ratio_eval": best["eval"] / best["infer --no-vis"],
            "ratio_eval_both": best["eval --boxes both"] / best["infer --no-vis"],
            "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
