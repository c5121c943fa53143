"""`python -m posekit ...` as a user runs it, for the tests that drive the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from paths import MODELS, ROOT


def run_posekit(*args: object, cache: Path | None = None, env: dict[str, str] | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m posekit ARGS` from the repository root: this checkout's posekit, the shared
    weights, `cache` as POSEKIT_CACHE when given (else this process's), `env` on top; output captured."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "POSEKIT_MODELS": str(MODELS)}
    if cache is not None:
        full["POSEKIT_CACHE"] = str(cache)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "posekit", *map(str, args)], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=timeout)
