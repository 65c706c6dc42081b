"""Shared fixtures: an isolated cache folder for every test session, and a tiny dataset on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TINY_PLUGIN = str(TESTS / "tiny_plugin.py")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Decoded-image caches and generated data go to a temporary folder, not ~/.cache."""
    previous = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("bench-cache"))
    yield
    if previous is None:
        os.environ.pop("BENCH_CACHE_DIR", None)
    else:
        os.environ["BENCH_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The ``tiny`` dataset of tests/tiny_plugin.py, rendered once per session."""
    from tiny_plugin import load_tiny

    root = tmp_path_factory.mktemp("tiny-data")
    load_tiny(root, {})
    return root
