import pytest

from posekit import registry
from paths import MODELS


def test_every_entry_names_source_licence_and_accuracy():
    for spec in registry.MODELS.values():
        assert spec.source and spec.licence and spec.accuracy, spec.name
        assert spec.task in ("pose", "detector")
        assert spec.colour in ("RGB", "BGR")


def test_unknown_name_suggests_close_matches():
    with pytest.raises(registry.UnknownModel, match="did you mean movenet-thunder"):
        registry.get("movenet-thuner")


def test_shared_files_match_their_registered_checksums():
    for name in ("movenet-thunder", "movenet-lightning", "rtmdet-nano-person", "yolox-nano"):
        for path, wf in zip(registry.find_weights(name, download=False), registry.get(name).files):
            assert path.is_relative_to(MODELS)
            assert registry.sha256sum(path) == wf.sha256, path


def test_offline_missing_file_says_what_and_where(monkeypatch, tmp_path):
    monkeypatch.setenv("POSEKIT_MODELS", str(tmp_path / "models"))
    with pytest.raises(registry.WeightsNotFound, match=r"yolox-s-640\.onnx.*downloads are off.*POSEKIT_MODELS"):
        registry.find_weights("yolox-s", download=False)


def test_explicit_path_wins(tmp_path):
    path = MODELS / "rtmdet-nano-person.onnx"
    assert registry.find_weights("rtmdet-nano-person", path=path) == [path]
    with pytest.raises(registry.WeightsNotFound, match="no file or folder"):
        registry.find_weights("rtmdet-nano-person", path=tmp_path / "nope.onnx")
