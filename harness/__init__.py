"""multilabel-bench: the reference benchmark harness for multi-label image classification.

The Python API mirrors the command line::

    from harness import run, evaluate, fuse, compare

    record = run(dataset="shapes", protocol="smoke")      # a RunRecord; record.path is the run folder
    fused = fuse([a.path, b.path], name="ScaleEn", out="runs")
    comparison = compare(a.path, b.path)                  # paired bootstrap of B − A, and what differs
    comparison = compare([a0, a1, a2], [b0, b1, b2])      # seeds per side: two-level bootstrap, P(B > A)
    frame = load_runs("runs/*")                           # a pandas DataFrame, one row per run

The plugin API is what this module exports: the hook marker, the specs, ``UserError``, the
dataset helpers (``assemble``, ``Files``, ``leaves_folder``, ``DatasetProblem``), the weights
loader (``load_state_dict``) and ``create_model`` / ``load_dataset``, plus the modules named in
``PLUGIN_API_MODULES``; plugins import nothing else of the core (a test checks it)::

    from harness import hookimpl, ModelSpec

    @hookimpl
    def register_models(register):
        register(ModelSpec(name="my-attention", version="0.1.0", build=build,
                           head_prefixes=("head",)))
"""

from importlib import metadata as _metadata

from harness.machine import tune_cpu_runtime as _tune_cpu_runtime

# Before torch loads: how its OpenMP threads wait, and glibc's malloc thresholds (no number changes).
_tune_cpu_runtime()

from harness.hookspecs import hookimpl
from harness.specs import (
    AugmentationSpec,
    Dataset,
    DatasetInfo,
    DatasetSpec,
    FusionSpec,
    LoggerSpec,
    LossSpec,
    ModelSpec,
    RecipeSpec,
    Split,
)

__version__ = _metadata.version("multilabel-bench")

# Core modules a plugin may import beside the names below (what datasets and models need).
PLUGIN_API_MODULES = ("harness.annotations", "harness.cache", "harness.datasets", "harness.errors", "harness.files",
                      "harness.progress", "harness.specs", "harness.weights")

_API = {
    "UserError": "harness.errors",
    "assemble": "harness.datasets",
    "Files": "harness.datasets",
    "DatasetProblem": "harness.datasets",
    "leaves_folder": "harness.datasets",
    "load_state_dict": "harness.weights",
    "create_model": "harness.components",
    "load_dataset": "harness.components",
    "run": "harness.runner",
    "RunConfig": "harness.config",
    "ResolvedRun": "harness.config",
    "RunRecord": "harness.results",
    "evaluate": "harness.metrics",
    "fuse": "harness.fusion",
    "compare": "harness.comparison",
    "load_runs": "harness.tables",
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
    "DatasetProblem",
    "Files",
    "UserError",
    "assemble",
    "create_model",
    "leaves_folder",
    "load_dataset",
    "load_state_dict",
    "DatasetInfo",
    "DatasetSpec",
    "FusionSpec",
    "LoggerSpec",
    "LossSpec",
    "ModelSpec",
    "RecipeSpec",
    "ResolvedRun",
    "RunConfig",
    "RunRecord",
    "Split",
    "compare",
    "evaluate",
    "fuse",
    "hookimpl",
    "load_runs",
    "run",
    "__version__",
]
