"""multilabel-bench: the reference benchmark harness for multi-label image classification.

The Python API mirrors the command line::

    from harness import run, evaluate, fuse, compare

    record = run(dataset="shapes", protocol="smoke")      # a RunRecord; record.path is the run folder
    fused = fuse([a.path, b.path], name="ScaleEn", out="runs")
    comparison = compare(a.path, b.path)                  # paired bootstrap of B − A, and what differs

The plugin API::

    from harness import hookimpl, ModelSpec

    @hookimpl
    def register_models(register):
        register(ModelSpec(name="my-attention", version="0.1.0", build=build,
                           head_prefixes=("head",)))
"""

import os as _os

# torch's OpenMP threads spin between parallel regions unless told to wait passively; on a CPU
# whose cores other processes share, a spinning thread holds the core its partner waits for
# (a smoke-protocol step measured 3-5x slower on a busy 2-core machine). The policy changes
# no number. It applies when torch is imported after harness and the variable is not set.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from harness.hookspecs import hookimpl
from harness.specs import (
    AugmentationSpec,
    Dataset,
    DatasetInfo,
    DatasetSpec,
    FusionSpec,
    LossSpec,
    ModelSpec,
    Split,
)

__version__ = "0.2.0"

_API = {
    "run": "harness.runner",
    "RunConfig": "harness.config",
    "ResolvedRun": "harness.config",
    "RunRecord": "harness.results",
    "evaluate": "harness.metrics",
    "fuse": "harness.fusion",
    "compare": "harness.comparison",
}


def __getattr__(name: str):
    """The API functions, imported on first use so that ``import harness`` (and every plugin) stays light."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


__all__ = [
    "AugmentationSpec",
    "Dataset",
    "DatasetInfo",
    "DatasetSpec",
    "FusionSpec",
    "LossSpec",
    "ModelSpec",
    "ResolvedRun",
    "RunConfig",
    "RunRecord",
    "Split",
    "compare",
    "evaluate",
    "fuse",
    "hookimpl",
    "run",
    "__version__",
]
