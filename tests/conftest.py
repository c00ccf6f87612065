"""Test settings shared by the whole suite.

* The hermetic offline environment is applied with a per-session state folder **before** any
  heavy import (ultralytics/prefect/torch read it at import time).
* ``shared`` fixture: the read-only ``../shared`` folder. Tests that need it fail (not skip)
  when ``CI`` is set and it is missing.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_STATE = Path(tempfile.mkdtemp(prefix="fusebench-test-state-"))
os.environ.setdefault("FUSEBENCH_STATE", str(_STATE))

from pipeline import hermetic  # noqa: E402

hermetic.apply()   # before any heavy import, as the CLI and the flows do

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FUSEBENCH_SHARED", REPO.parent / "shared")).resolve()


def _need_shared(sub: str = "") -> Path:
    path = SHARED / sub
    if not path.exists():
        message = f"../shared is required for this test but {path} is missing"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path of ``../shared`` (fails under CI when missing, skips on a user's machine)."""
    return _need_shared()


@pytest.fixture(scope="session")
def shared_data(shared) -> Path:
    return _need_shared("data")


@pytest.fixture(scope="session")
def shared_reference(shared) -> Path:
    return _need_shared("reference")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for every test that runs flows in-process (about 12 s once,
    then about 1-1.5 s per flow run; ``environment.md``). Request it only where flows run."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


SHARED_FIXTURES = {"shared", "shared_data", "shared_reference"}


def pytest_collection_modifyitems(config, items):
    """Every test that reads ``../shared`` (through a fixture of :data:`SHARED_FIXTURES`, directly
    or through another fixture) carries ``@pytest.mark.shared`` (``pytest -m "not shared"`` then
    selects exactly the tests that run without it); a missing marker is a collection error."""
    unmarked = [item.nodeid for item in items
                if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("shared") is None]
    if unmarked:
        raise pytest.UsageError("tests reading ../shared without @pytest.mark.shared: " + ", ".join(unmarked))
