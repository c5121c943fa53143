"""Shared fixtures: the real weights, images and video in ../shared (never downloaded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSEKIT_SHARED", ROOT.parent / "shared")).resolve()
MODELS = SHARED / "models"
COCO = SHARED / "data" / "coco-val2017-mini"
COCO_ANN = COCO / "person_keypoints_val2017_mini.json"
COCO_IMAGES = COCO / "images"
DEMO_VIDEO = SHARED / "media" / "demo.mp4"

if not MODELS.is_dir():  # fail loudly: a suite that silently skips everything proves nothing
    raise RuntimeError(f"the shared test data is missing: expected {SHARED} (set POSEKIT_SHARED)")


@pytest.fixture(autouse=True)
def _models_from_shared(monkeypatch, tmp_path_factory):
    """Every test finds weights in ../shared and caches into a private folder; nothing downloads."""
    monkeypatch.setenv("POSEKIT_MODELS", str(MODELS))
    monkeypatch.setenv("POSEKIT_CACHE", str(_session_cache(tmp_path_factory)))
    monkeypatch.delenv("POSEKIT_MIRROR", raising=False)  # a developer's mirror must not change what tests fetch


_CACHE: list[Path] = []


def _session_cache(factory) -> Path:
    # One cache per test session, so exported engines are built once and reused across tests.
    if not _CACHE:
        _CACHE.append(factory.mktemp("posekit-cache"))
    return _CACHE[0]


@pytest.fixture(scope="session")
def coco_annotations() -> dict:
    return json.loads(COCO_ANN.read_text())


@pytest.fixture(scope="session")
def coco_image_paths() -> list[Path]:
    return sorted(COCO_IMAGES.glob("*.jpg"))


@pytest.fixture(scope="session")
def shared_env(tmp_path_factory):
    """The autouse environment, for session-scoped fixtures (which are set up before it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEKIT_MODELS", str(MODELS))
        mp.setenv("POSEKIT_CACHE", str(_session_cache(tmp_path_factory)))
        yield
