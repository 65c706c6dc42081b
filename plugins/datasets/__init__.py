"""Built-in datasets, registered through the ``multilabel_bench`` entry point like any plugin.

``shapes`` (embedded synthetic default), the official layouts of ``voc2007``, ``coco2014``
and ``nuswide``, and ``manifest`` for a user's own data. Loading a spec reads nothing: each
``load`` runs only when a command asks for the dataset.
"""

from harness import hookimpl
from plugins.datasets.coco2014 import COCO2014
from plugins.datasets.manifest import MANIFEST
from plugins.datasets.nuswide import NUSWIDE
from plugins.datasets.shapes import SHAPES
from plugins.datasets.voc2007 import VOC2007


@hookimpl
def register_datasets(register):
    """Register every built-in dataset."""
    for spec in (SHAPES, VOC2007, COCO2014, NUSWIDE, MANIFEST):
        register(spec)
