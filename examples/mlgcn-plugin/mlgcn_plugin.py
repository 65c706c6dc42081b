"""ML-GCN models for multilabel-bench: a graph convolutional network over the labels makes the classifier.

Chen, Wei, Wang & Guo, "Multi-Label Image Recognition with Graph Convolutional Networks",
CVPR 2019. A ResNet's last feature map is max-pooled to a D-dim image feature x. Each class
is a node of a graph whose edges come from how often labels occur together in the training
labels; a two-layer GCN maps one input vector per node to a D-dim classifier w_c, and the
logit of class c is w_c · x (no bias), so correlated labels get related classifiers.

The graph (paper section 3.4): conditional probabilities P(L_j | L_i) = n_ij / n_i from the
training labels, binarised at τ = 0.4 and re-weighted with p = 0.2 so that a node keeps
weight 1 − p for itself and spreads p over its neighbours, then normalised as
Â = D^{-1/2} A' D^{-1/2}. The training labels come from the model context
(``build(..., dataset=DatasetInfo)``), so ``result.json`` records exactly which labels the
graph was made from.

Differs from the paper: the node inputs are not GloVe word vectors (they cannot be
downloaded here) but fixed 300-dim vectors drawn from numpy's legacy ``RandomState``
seeded with the sha256 of each class name (see ``label_embeddings``).

The module imports nothing heavy at load time, so that ``bench plugins`` stays fast; torch
and torchvision are imported when a model is built.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from harness import ModelSpec, hookimpl
from harness.errors import UserError

__version__ = "0.1.0"

# torchvision's ImageNet-1k V1 files and the channel count D of each backbone's last stage
BACKBONES = {
    "resnet18": ("resnet18-f37072fd.pth", 512),
    "resnet50": ("resnet50-0676ba61.pth", 2048),
    "resnet101": ("resnet101-63fe2227.pth", 2048),
}
TAU = 0.4  # binarisation threshold of the conditional probabilities (paper: τ = 0.4)
P = 0.2  # weight a node gives its neighbours, 1 − p itself (paper: p = 0.2)
EMBEDDING_DIM = 300  # the paper's GloVe dimension
HIDDEN_DIM = 1024  # the paper's first GCN layer
NEGATIVE_SLOPE = 0.2  # the paper's LeakyReLU between the two GCN layers


def label_embeddings(classes, dim: int = EMBEDDING_DIM) -> np.ndarray:
    """(C, dim) float32 node inputs: for each class, ``dim`` standard normal values from
    ``numpy.random.RandomState`` seeded with the sha256 of its UTF-8 name.

    A stand-in for GloVe: the same vector for the same name on every machine (the legacy
    ``RandomState`` stream is frozen by numpy), independent of the other classes, but with
    none of the word semantics GloVe brings.
    """
    vectors = []
    for name in classes:
        seed = np.frombuffer(hashlib.sha256(name.encode("utf-8")).digest(), dtype="<u4")
        vectors.append(np.random.RandomState(seed).standard_normal(dim))
    return np.asarray(vectors, dtype=np.float32).reshape(len(classes), dim)


def conditional_probabilities(train_labels: np.ndarray) -> np.ndarray:
    """P[i, j] = P(L_j | L_i) = n_ij / n_i over the training images (paper eq. 6's matrix).

    n_ij counts images where labels i and j are both present, n_i = n_ii those where i is;
    ignored labels (-1) count as present, as the protocol trains them. A class that is never
    present has a row of zeros.
    """
    present = (np.asarray(train_labels) != 0).astype(np.float64)
    together = present.T @ present
    counts = np.diag(together)
    return np.divide(together, counts[:, None], out=np.zeros_like(together), where=counts[:, None] > 0)


def correlation_matrix(train_labels: np.ndarray, tau: float = TAU, p: float = P) -> np.ndarray:
    """The re-weighted correlation matrix A' (paper eqs. 7 and 8).

    A_ij = 1 where P(L_j | L_i) ≥ τ (i ≠ j), else 0; then A'_ij = p · A_ij / Σ_{k≠i} A_ik for
    i ≠ j and A'_ii = 1 − p. A class without neighbours keeps only its self-loop.
    """
    if not 0 <= p < 1:
        raise ValueError(f"p={p}: the re-weighting needs 0 ≤ p < 1 (a node must keep some weight for itself)")
    binary = (conditional_probabilities(train_labels) >= tau).astype(np.float64)
    np.fill_diagonal(binary, 0)
    neighbours = binary.sum(axis=1, keepdims=True)
    reweighted = p * np.divide(binary, neighbours, out=np.zeros_like(binary), where=neighbours > 0)
    np.fill_diagonal(reweighted, 1 - p)
    return reweighted


def normalized_adjacency(matrix: np.ndarray) -> np.ndarray:
    """Â = D^{-1/2} A D^{-1/2} with D_ii = Σ_j A_ij (paper eq. 5); every D_ii ≥ 1 − p > 0."""
    scale = 1 / np.sqrt(matrix.sum(axis=1))
    return scale[:, None] * matrix * scale[None, :]


def graph_convolution(adjacency, nodes, layer):
    """One GCN layer before its nonlinearity: Â H W (paper eq. 5), W = ``layer.weight``ᵀ."""
    return adjacency @ layer(nodes)


@functools.cache
def mlgcn_class():
    """The model class, defined on first use so that loading the plugin never imports torch."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class MLGCN(nn.Module):
        """ResNet feature map → global max pooling → x; GCN(Â, node inputs) → classifiers W; logits W x."""

        def __init__(self, backbone: nn.Module, channels: int, embeddings: np.ndarray, adjacency: np.ndarray):
            super().__init__()
            self.backbone = backbone
            self.register_buffer("embeddings", torch.from_numpy(np.asarray(embeddings, dtype=np.float32)))
            self.register_buffer("adjacency", torch.from_numpy(np.asarray(adjacency, dtype=np.float32)))
            self.gcn = nn.ModuleList([
                nn.Linear(embeddings.shape[1], HIDDEN_DIM, bias=False),
                nn.Linear(HIDDEN_DIM, channels, bias=False),
            ])

        def classifiers(self):
            """(C, D): Â · LeakyReLU(Â E W1) · W2, no nonlinearity after the last layer."""
            hidden = F.leaky_relu(graph_convolution(self.adjacency, self.embeddings, self.gcn[0]), NEGATIVE_SLOPE)
            return graph_convolution(self.adjacency, hidden, self.gcn[1])

        def forward(self, images):
            features = self.backbone(images).amax(dim=(2, 3))
            return features @ self.classifiers().T

    return MLGCN


def build(num_classes: int, pretrained: bool, dataset=None, *, backbone: str):
    """ML-GCN on ``backbone``, its graph from ``dataset.train_labels``; with ``pretrained``,
    the backbone starts from torchvision's ImageNet weights.

    The weights come from a local file through ``harness.weights`` (never the network), so
    the run records the file and its sha256. The ResNet's own pooling and 1000-way layer are
    dropped; the GCN starts from PyTorch's default ``nn.Linear`` initialisation.
    """
    import torch.nn as nn
    import torchvision.models as tvm

    from harness.weights import load_state_dict

    if dataset is None:
        raise UserError(f"mlgcn-{backbone} builds its label graph from the training labels: "
                        "build(num_classes, pretrained, dataset=DatasetInfo(...)), as bench run calls it")
    if dataset.train_labels.shape[1] != num_classes or len(dataset.classes) != num_classes:
        raise UserError(f"mlgcn-{backbone}: {num_classes} classes asked for, but dataset {dataset.name!r} has "
                        f"{len(dataset.classes)} classes and {dataset.train_labels.shape[1]} label columns")
    filename, channels = BACKBONES[backbone]
    resnet = getattr(tvm, backbone)(weights=None)
    if pretrained:
        resnet.load_state_dict(load_state_dict(filename))
    features = nn.Sequential(*list(resnet.children())[:-2])  # up to layer4: no avgpool, no fc
    adjacency = normalized_adjacency(correlation_matrix(dataset.train_labels))
    return mlgcn_class()(features, channels, label_embeddings(dataset.classes), adjacency)


@hookimpl
def register_models(register):
    for backbone in BACKBONES:
        register(
            ModelSpec(
                name=f"mlgcn-{backbone}",
                version="1",
                build=functools.partial(build, backbone=backbone),
                head_prefixes=("gcn",),
                backbone=backbone,
                description=f"ML-GCN (Chen et al. 2019) on torchvision {backbone}, τ={TAU}, p={P}, "
                            f"hashed random node inputs instead of GloVe",
            )
        )
