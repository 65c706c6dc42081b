"""What the checks around plugin code add to a ``bench run``, in-process ratios.

    python benchmarks/plugin_checks.py [--models smallcnn,resnet18] [--size 32] [--rounds 3] [--json PATH]

For each model, in alternating order over ``--rounds`` rounds (the median is reported):

- ``old``: the gradient check as ``bench run`` did it before: 2 images of min(size, 64) px;
- ``new``: today's ``honesty.check_gradients``: the loss's own gradient, then 4 images of
  64 px whatever the run's size;
- ``step``: one training step (forward, backward, SGD) on 16 images of ``--size`` px, so that
  the check's cost reads as a number of training steps.

It also times one ``harness.weights.no_network`` block (entered around plugin import, each
``register_*`` hook and ``build``) and one ``Registry.imported_modules`` scan (once per run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from tabulate import tabulate

from harness import honesty, weights
from harness.registry import Registry


def seconds(function, repeat: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="smallcnn,resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    load = os.getloadavg()
    registry = Registry()
    loss = registry.get("loss", "bce")
    rows, record = [], {}
    for name in args.models.split(","):
        component = registry.get("model", name)
        torch.manual_seed(0)
        model = component.spec.build(20, False)
        images, targets = torch.randn(16, 3, args.size, args.size), (torch.rand(16, 20) < 0.4).float()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            optimizer.zero_grad()
            loss.spec.loss(model.train()(images), targets).backward()
            optimizer.step()

        def old():
            honesty.CHECK_BATCH = 2
            try:
                honesty._check_model_gradients(component, model, loss, 20, min(args.size, honesty.CHECK_SIZE))
            finally:
                honesty.CHECK_BATCH = 4

        def new():
            honesty.check_gradients(component, model, loss, 20, args.size)

        times = {"old": [], "new": [], "step": []}
        for index in range(args.rounds):
            for key, function in sorted({"old": old, "new": new, "step": step}.items(), reverse=index % 2 == 1):
                times[key].append(seconds(function))
        median = {key: statistics.median(values) for key, values in times.items()}
        record[name] = {**{f"{key}_s": round(value, 4) for key, value in median.items()},
                        "new_over_old": round(median["new"] / median["old"], 2),
                        "new_in_steps": round(median["new"] / median["step"], 1)}
        rows.append((name, f"{median['old']:.3f}", f"{median['new']:.3f}", record[name]["new_over_old"],
                     f"{median['step']:.3f}", record[name]["new_in_steps"]))

    def offline():
        with weights.no_network():
            pass

    no_network_ms = seconds(offline, 20) * 1e3
    imported_ms = seconds(registry.imported_modules, 5) * 1e3
    print(tabulate(rows, headers=["model", "old check s", "new check s", "new/old", "train step s", "new in steps"],
                   disable_numparse=True))
    print(f"no_network block {no_network_ms:.2f} ms; imported_modules scan {imported_ms:.1f} ms "
          f"({len(sys.modules)} modules loaded)")
    if args.json_path:
        with open(args.json_path, "w") as stream:
            json.dump({"benchmark": "plugin_checks", "command": " ".join(sys.argv),
                       "settings": {"models": args.models, "size": args.size, "rounds": args.rounds},
                       "machine": {"cpu_count": os.cpu_count(), "load_average_at_start": list(load),
                                   "platform": platform.platform(), "torch_threads": torch.get_num_threads()},
                       "models": record, "no_network_ms": round(no_network_ms, 3),
                       "imported_modules_ms": round(imported_ms, 2)}, stream, indent=2)


if __name__ == "__main__":
    main()
