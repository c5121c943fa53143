"""Time PoseTracker.update per frame for crowds of different sizes (synthetic walkers built from
the shared COCO people, see tests/synthetic_tracks.py). Prints a table; run from the repo root:

    python benchmarks/track_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from posekit.tracking import PoseTracker  # noqa: E402
from synthetic_tracks import Walker, load_people, render  # noqa: E402

ANN = ROOT.parent / "shared" / "data" / "coco-val2017-mini" / "person_keypoints_val2017_mini.json"


def main() -> None:
    people = load_people(ANN, height=120)
    rng = np.random.default_rng(0)
    print(f"{'people':>6}  {'smoothing':>9}  {'ms/frame':>8}  {'frames/s':>8}")
    for n in (1, 10, 30, 60):
        walkers = [Walker(people[i % len(people)], i + 1, (rng.uniform(0, 1100), rng.uniform(0, 560)),
                          (rng.uniform(-4, 4), rng.uniform(-2, 2))) for i in range(n)]
        _, dets = render(walkers, 200, seed=n, drop=0.05)
        for smoothing in (False, True):
            tracker = PoseTracker(smoothing=smoothing)
            for d in dets[:20]:
                tracker.update(d)
            start = time.perf_counter()
            for d in dets[20:]:
                tracker.update(d)
            ms = (time.perf_counter() - start) / len(dets[20:]) * 1000
            print(f"{n:>6}  {str(smoothing):>9}  {ms:8.3f}  {1000 / ms:8.0f}")


if __name__ == "__main__":
    main()
