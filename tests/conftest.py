"""Shared fixtures: where the public datasets live, and skipping cleanly when they are absent."""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The ../shared/data folder, or a skip when this is a user's clone without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not present at {SHARED_DATA}")
    return SHARED_DATA
