"""Stress: run `posekit track VIDEO --max-frames 5` many times; every run must exit 0.

About 1 run in 20 used to abort at exit ("terminate called without an active exception", exit
134) while a decoder thread still ran. Not part of the default test suite (50 runs take minutes):

    POSEKIT_MODELS=../shared/models python scripts/stress_track_max_frames.py --runs 50

Prints one line per run that did not exit 0 and a closing "N passed, N failed" line; exits 1
when any run failed.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--video", default=str(ROOT.parent / "shared" / "media" / "demo.mp4"))
    parser.add_argument("--max-frames", type=int, default=5)
    parser.add_argument("--precision", default="fp32", help="fp32 needs no INT8 build (default fp32)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("POSEKIT_MODELS", str(ROOT.parent / "shared" / "models"))
    codes: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        env.setdefault("POSEKIT_CACHE", str(Path(tmp) / "cache"))
        for n in range(args.runs):
            out = Path(tmp) / f"out{n}"
            r = subprocess.run([sys.executable, "-m", "posekit", "track", args.video, "--out", str(out),
                                "--max-frames", str(args.max_frames), "--precision", args.precision],
                               env=env, capture_output=True, text=True, timeout=600)
            codes[r.returncode] += 1
            if r.returncode != 0:
                print(f"run {n}: exit {r.returncode}: {r.stderr.strip().splitlines()[-1:]}", flush=True)
    failed = args.runs - codes[0]
    print(f"exit codes: {dict(codes)}")
    print(f"{codes[0]} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
