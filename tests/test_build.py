"""The engine build cache: a valid entry is reused; a stale or corrupt one is rebuilt, never loaded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from posekit import build as build_mod
from posekit.build import BuildRequest, build, check_entry, parse_batch
from posekit.compare import real_inputs
from posekit.engines import load_engine
from paths import COCO_ANN, MODELS, ROOT

MODEL = "rtmdet-nano-person"


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_bytes(path):
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _delete(path):
    path.unlink()


def _garble_entry(path):
    (path.parent / "entry.json").write_text("{not json")


def _stale_entry(path):
    entry = path.parent / "entry.json"
    record = json.loads(entry.read_text())
    record["key"]["libraries"]["onnxruntime"] = "0.0.1"
    entry.write_text(json.dumps(record))


def _no_entry(path):
    (path.parent / "entry.json").unlink()


# damage, what check_entry says before the rebuild
DAMAGE = [
    (_truncate, "corrupt"),
    (_flip_bytes, "corrupt"),
    (_delete, "missing"),
    (_garble_entry, "unreadable"),
    (_stale_entry, "stale entry \\(changed: libraries\\)"),
    (_no_entry, "no entry"),
]


@pytest.fixture
def frame(shared_env):
    return real_inputs(MODEL, COCO_ANN, limit=1)


def test_second_build_is_a_cache_hit(monkeypatch):
    first = build(MODEL)
    calls = []
    real_cached = build_mod.cached_artefact

    def spy(request, libraries, filename, make, force=False):
        return real_cached(request, libraries, filename, lambda p: (calls.append(p), make(p)), force)

    monkeypatch.setattr(build_mod, "cached_artefact", spy)
    mtime = first.stat().st_mtime_ns
    assert build(MODEL) == first
    assert calls == [] and first.stat().st_mtime_ns == mtime
    record = json.loads((first.parent / "entry.json").read_text())
    assert record["key"]["source_sha256"] == build_mod.source_checksum(MODEL)
    assert record["key"]["libraries"]["onnxruntime"]


@pytest.mark.parametrize("damage, why", DAMAGE, ids=[d.__name__.strip("_") for d, _ in DAMAGE])
def test_damaged_entry_is_detected_and_rebuilt(damage, why, frame):
    path = build(MODEL, force=True)
    request = BuildRequest(MODEL, "onnxruntime")
    key = build_mod.cache_key(request, ("onnxruntime",))
    damage(path)
    artefact, reason = check_entry(path.parent, key)
    assert artefact is None
    assert re.search(why, reason), reason
    rebuilt = build(MODEL)
    assert rebuilt == path
    assert check_entry(path.parent, key) == (path, "ok")
    # the rebuilt engine runs and agrees with the source model
    want = load_engine(MODELS / f"{MODEL}.onnx")(frame)[0]
    np.testing.assert_allclose(load_engine(rebuilt)(frame)[0], want, atol=1e-3)


def test_different_precision_or_batch_is_a_different_entry():
    a = build_mod.entry_dir(BuildRequest(MODEL, "onnxruntime", "fp32", (1, 8, 32)),
                            build_mod.cache_key(BuildRequest(MODEL, "onnxruntime", "fp32", (1, 8, 32)), ()))
    b = build_mod.entry_dir(BuildRequest(MODEL, "onnxruntime", "fp32", (1, 8, 64)),
                            build_mod.cache_key(BuildRequest(MODEL, "onnxruntime", "fp32", (1, 8, 64)), ()))
    assert a != b


@pytest.mark.parametrize("text, expected, error", [
    ("1,8,32", (1, 8, 32), None),
    ("16", (16, 16, 16), None),
    ("1,8", None, "three integers"),
    ("a,b,c", None, "integers"),
])
def test_parse_batch(text, expected, error):
    if error:
        with pytest.raises(ValueError, match=error):
            parse_batch(text)
    else:
        assert parse_batch(text) == expected


@pytest.mark.parametrize("kwargs, error", [
    (dict(precision="int4"), "unknown precision 'int4'"),
    (dict(batch=(8, 1, 32)), "1 <= MIN <= OPT <= MAX"),
])
def test_bad_request(kwargs, error):
    with pytest.raises(ValueError, match=error):
        BuildRequest(MODEL, "onnxruntime", **kwargs)


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "posekit", *args], cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.fixture
def cli_env(tmp_path):
    return {**os.environ, "PYTHONPATH": str(ROOT), "POSEKIT_MODELS": str(MODELS), "POSEKIT_CACHE": str(tmp_path)}


def test_cli_build_writes_artefact_and_entry(cli_env, tmp_path):
    done = _cli("build", MODEL, "--backend", "onnxruntime", env=cli_env)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.is_file() and path.is_relative_to(tmp_path / "engines" / MODEL)
    record = json.loads((path.parent / "entry.json").read_text())
    assert record["artefact"] == path.name and record["key"]["backend"] == "onnxruntime"
    assert not list((tmp_path / "engines" / MODEL).glob(".*"))  # no temporary folder left


@pytest.mark.parametrize("args, message", [
    (["--backend", "tensorrt"], "needs the package 'tensorrt'.*pip install tensorrt"),
    (["--backend", "inductor"], "compiles in-process"),
    (["--backend", "openvino"], "unknown backend 'openvino'"),
    (["--precision", "fp16"], "fp32 or int8"),
])
def test_cli_build_errors_say_why(args, message, cli_env):
    if "tensorrt" in args:
        try:
            import tensorrt  # noqa: F401
            pytest.skip("tensorrt is installed here")
        except ImportError:
            pass
    done = _cli("build", MODEL, *args, env=cli_env)
    assert done.returncode == 1
    assert re.search(message, done.stderr), done.stderr
