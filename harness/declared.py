"""What a model or loss declares about itself besides its code: settings, origin, input
normalisation. Checked when the plugin registers the spec (one line naming the plugin) and
recorded in ``result.json`` so that ``bench compare`` and leaderboard rows can show it.

- ``params``: the method's hyperparameters as JSON values (γ, λ, heads, decoder layers…).
- ``upstream``: the published code it vendors, ``owner/repo@commit``.
- ``paper``, ``code`` (models): URLs of the paper and of the code.
- ``normalization`` (models): ``(mean, std)`` per RGB channel, applied by the core as
  ``(x − mean) / std`` to images in [0, 1]; ImageNet's by default. A built model may carry
  its own ``normalization`` attribute (``timm:`` models take their ``pretrained_cfg``'s).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from harness.errors import PluginError
from harness.protocol import IMAGENET_MEAN, IMAGENET_STD

IMAGENET_NORMALIZATION = (IMAGENET_MEAN, IMAGENET_STD)
UPSTREAM = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+@[0-9a-f]{7,40}")
URL = re.compile(r"https?://\S+")


def check_spec(spec: Any, kind: str, plugin: str) -> None:
    """Refuse, in one ``PluginError`` line naming the plugin, a declaration the record could not hold."""
    where = f"plugin {plugin!r}: {kind} {spec.name!r}"
    params = getattr(spec, "params", {})
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise PluginError(f"{where} has params that are not JSON values ({error}); use numbers, strings, booleans, "
                          "lists and dicts") from None
    if not isinstance(params, dict):
        raise PluginError(f"{where} has params {type(params).__name__}; give a dict of name → JSON value")
    upstream = getattr(spec, "upstream", None)
    if upstream is not None and not (isinstance(upstream, str) and UPSTREAM.fullmatch(upstream)):
        raise PluginError(f"{where} has upstream {upstream!r}; give owner/repo@commit (the commit's hex digits)")
    for name in ("paper", "code"):
        value = getattr(spec, name, None)
        if value is not None and not (isinstance(value, str) and URL.fullmatch(value)):
            raise PluginError(f"{where} has {name} {value!r}; give an http(s) URL")
    if kind == "model":
        normalization_values(spec.normalization, where)


def normalization_values(value: Any, where: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` as two 3-tuples of finite floats, the std positive; else one line naming ``where``."""
    try:
        mean, std = (tuple(float(v) for v in part) for part in value)
    except (TypeError, ValueError):
        mean = std = ()
    if (len(mean), len(std)) != (3, 3) or not all(map(math.isfinite, mean + std)) or min(std) <= 0:
        raise PluginError(f"{where} has normalization {value!r}; give (mean, std), 3 finite values each, std > 0")
    return mean, std


def model_normalization(model, spec, label: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation the core applies to ``model``'s inputs: the built model's own
    ``normalization`` attribute when it has one, else its spec's."""
    return normalization_values(getattr(model, "normalization", spec.normalization), label)


def declared_facts(record) -> dict[str, Any]:
    """What a run's model and loss declared and were given, as ``bench compare`` lists them:
    params, upstream code, input normalisation, ``build``'s context and the weights files'
    sha256 (a ``results.RunRecord``; a fusion has none of these)."""
    model, loss = record.model, record.loss
    if model is None:
        return {}

    def text(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    return {
        "model params": text(model.params),
        "model upstream": model.upstream,
        "normalization": text(model.normalization),
        "model context": text(model.context),
        "weights": ", ".join(f.sha256[:12] for f in model.pretrained.files) or "none",
        "loss params": text(loss.params) if loss else None,
        "loss upstream": loss.upstream if loss else None,
    }
