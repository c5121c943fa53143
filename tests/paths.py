"""Where the shared test data lives, and the session's model cache: one plain module that
conftest.py and the test files import (`from paths import ...`), so no test imports conftest
and there is one copy of each.

A test file that imported conftest by another name (`tests.conftest`) got a second module
instance with its own state; nothing here keeps state in the module: the session cache is a
fixed folder under pytest's per-session base temp directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSEKIT_SHARED", ROOT.parent / "shared")).resolve()
MODELS = SHARED / "models"
COCO = SHARED / "data" / "coco-val2017-mini"
COCO_ANN = COCO / "person_keypoints_val2017_mini.json"
COCO_IMAGES = COCO / "images"
DEMO_VIDEO = SHARED / "media" / "demo.mp4"

if not MODELS.is_dir():  # fail loudly: a suite that silently skips everything proves nothing
    raise RuntimeError(f"the shared test data is missing: expected {SHARED} (set POSEKIT_SHARED)")


def session_cache(tmp_path_factory) -> Path:
    """The model cache of this test session, so exported engines are built once and reused
    across tests (and across the CLI subprocesses that are pointed at it)."""
    folder = tmp_path_factory.getbasetemp() / "posekit-cache"
    folder.mkdir(exist_ok=True)
    return folder
