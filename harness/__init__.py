"""multilabel-bench: the reference benchmark harness for multi-label image classification.

The public plugin API::

    from harness import hookimpl, ModelSpec

    @hookimpl
    def register_models(register):
        register(ModelSpec(name="my-attention", version="0.1.0", build=build,
                           head_prefixes=("head",)))
"""

from harness.hookspecs import hookimpl
from harness.specs import (
    AugmentationSpec,
    Dataset,
    DatasetSpec,
    FusionSpec,
    ModelSpec,
    Split,
)

__version__ = "0.1.0"

__all__ = [
    "AugmentationSpec",
    "Dataset",
    "DatasetSpec",
    "FusionSpec",
    "ModelSpec",
    "Split",
    "hookimpl",
    "__version__",
]
