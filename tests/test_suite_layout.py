"""The suite's own wiring: shared paths and the session cache come from one module instance."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import paths


def test_no_test_module_imports_conftest():
    # Importing conftest from a test makes a second module copy (pytest loads it as "conftest";
    # "tests.conftest" is another one) with its own state: shared names live in paths.py.
    here = Path(__file__).parent
    offenders = [f.name for f in here.glob("*.py") if re.search(r"^\s*(from|import) (tests\.)?conftest\b",
                                                                 f.read_text(), re.M)]
    assert offenders == []


def test_paths_and_conftest_are_loaded_once(tmp_path_factory):
    assert "tests.paths" not in sys.modules and "tests.conftest" not in sys.modules
    assert paths.session_cache(tmp_path_factory) == paths.session_cache(tmp_path_factory)
    assert paths.session_cache(tmp_path_factory).is_dir()
