"""Shared fixtures: the real weights, images and video in ../shared (never downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paths import COCO_ANN, COCO_IMAGES, MODELS, session_cache


@pytest.fixture(autouse=True)
def _models_from_shared(monkeypatch, tmp_path_factory):
    """Every test finds weights in ../shared and caches into a private folder; nothing downloads."""
    monkeypatch.setenv("POSEKIT_MODELS", str(MODELS))
    monkeypatch.setenv("POSEKIT_CACHE", str(session_cache(tmp_path_factory)))
    monkeypatch.delenv("POSEKIT_MIRROR", raising=False)  # a developer's mirror must not change what tests fetch


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
        mp.setenv("POSEKIT_CACHE", str(session_cache(tmp_path_factory)))
        yield
