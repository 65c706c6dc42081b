"""Where the harness keeps generated data and decoded-image caches (never the source tree)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$BENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/multilabel-bench``, else ``~/.cache/multilabel-bench``."""
    if os.environ.get("BENCH_CACHE_DIR"):
        return Path(os.environ["BENCH_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "multilabel-bench"
