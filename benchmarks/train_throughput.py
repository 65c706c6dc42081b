"""Training images/s of the default ``bench run`` against a plain PyTorch loop, in one process.

Each round trains one epoch with the harness (``harness.run`` with the run's settings and
``epochs=1``; its images/s is the one the run logs, the epoch loop alone) and one epoch of a
plain loop on the same model, images, batch size, optimiser and thread count: the whole
uint8 training split in memory, then per step index, permute, ``float() / 255``, contiguous
(NCHW, the layout the harness gives a CPU model; the permuted layout would change the
convolutions' numbers), a random
flip with ``torch.where``, mean/std normalisation, forward, mean BCE, backward, SGD step.
The ratio harness / plain is taken per round (so both saw the same load; odd rounds run the
plain epoch first, so that a load that changes steadily favours neither) and its median
reported. Before the rounds, the input pass alone (flip, float conversion, normalisation) is
timed over the training split as the separate steps the trainer ran before and as the fused
``pipeline.to_model_input``, alternating batch by batch, and checked to give the same bits.
Defaults are the README's main job: ``shapes``, protocol ``smoke``, ``smallcnn``,
``flip`` at 64 px, batch 32.

    python benchmarks/train_throughput.py --rounds 3 --json train.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import pipeline  # noqa: E402  (before torch: the threads' wait policy, as in bench run)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from harness.config import RunConfig  # noqa: E402
from harness.data import fingerprint  # noqa: E402
from harness.registry import Registry  # noqa: E402
from harness.runner import load_dataset, run  # noqa: E402
from harness.train import epoch_generator, parameter_groups, seed_everything  # noqa: E402


def plain_epoch(model, optimizer, images: torch.Tensor, targets: torch.Tensor, batch_size: int, mean, std,
                generator: torch.Generator) -> float:
    """One epoch of the plain loop; returns images/s."""
    model.train()
    order = torch.randperm(len(images), generator=generator)
    start = time.perf_counter()
    for first in range(0, len(order), batch_size):
        indices = order[first:first + batch_size]
        batch = (images[indices].permute(0, 3, 1, 2).float() / 255).contiguous()  # NCHW, as the harness feeds a CPU
        flip = torch.rand(len(indices), generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        logits = model((batch - mean) / std)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets[indices])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(order) / (time.perf_counter() - start)


def separate_steps(images_uint8: torch.Tensor, flip: torch.Tensor, mean, std) -> torch.Tensor:
    """The input pass as the trainer did it before ``to_model_input`` fused it: float, / 255,
    contiguous, flip of the float images, ``(x - mean) / std``."""
    images = images_uint8.permute(0, 3, 1, 2).float().div_(255).contiguous()
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return (images - mean) / std


def input_pass_ratio(images: torch.Tensor, batch_size: int, mean, std, repeats: int) -> dict:
    """Batches/s of the separate steps and of the fused pass on the same batches, alternating
    batch by batch; the median of per-repeat ratios. The outputs are checked to be equal."""
    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"separate": [], "fused": []}
    for _ in range(repeats):
        spent = {"separate": 0.0, "fused": 0.0}
        for first in range(0, len(images), batch_size):
            batch = images[first:first + batch_size]
            flip = pipeline.random_flips(len(batch), generator, cpu)
            start = time.perf_counter()
            separate = separate_steps(batch, flip, mean, std)
            spent["separate"] += time.perf_counter() - start
            start = time.perf_counter()
            fused = pipeline.to_model_input(batch, cpu, False, flip=flip, mean=mean, std=std)
            spent["fused"] += time.perf_counter() - start
            if not torch.equal(fused.view(torch.int32), separate.view(torch.int32)):
                raise SystemExit("the fused input pass differs from the separate steps")
        for key in times:
            times[key].append(spent[key])
    return {"separate_images_per_s": len(images) / statistics.median(times["separate"]),
            "fused_images_per_s": len(images) / statistics.median(times["fused"]),
            "speedup": statistics.median(s / f for s, f in zip(times["separate"], times["fused"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--plugin", action="append", default=[], help="as bench run --plugin")
    parser.add_argument("--model", default=None, help="default: the protocol's (smallcnn)")
    parser.add_argument("--size", type=int, default=None, help="default: the protocol's (64)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one harness epoch and one plain epoch")
    parser.add_argument("--json", type=Path, default=None, help="write the measurements here")
    args = parser.parse_args()
    load_at_start = list(os.getloadavg())

    config = RunConfig(dataset=args.dataset, data_root=args.data_root, model=args.model, size=args.size, epochs=1,
                       device="cpu", plugins=tuple(args.plugin), overwrite=True)
    registry = Registry(config.plugins)
    resolved = config.resolve(registry)
    rules = resolved.rules()
    dataset = load_dataset(registry.get("dataset", resolved.dataset), resolved.data_root, False)
    train = dataset.splits["train"]
    split = pipeline.SplitImages(train.image_paths, resolved.size, name=f"{dataset.name}-train",
                                 fingerprint=fingerprint(dataset), cache=True)
    images = torch.from_numpy(np.array(split.source(None).array))  # the same bytes the harness trains on
    targets = torch.from_numpy((train.labels != 0).astype(np.float32))
    mean, std = pipeline.normalization(rules.normalize_mean, rules.normalize_std, torch.device("cpu"))

    seed_everything(resolved.seed)
    spec = registry.get("model", resolved.model).spec
    model = spec.build(len(dataset.classes), False)
    optimizer = torch.optim.SGD(parameter_groups(model, tuple(spec.head_prefixes), rules, resolved.model),
                                lr=rules.lr_head, momentum=rules.momentum, weight_decay=rules.weight_decay)

    input_pass = input_pass_ratio(images, resolved.batch_size, mean, std, args.rounds)
    print(f"input pass (flip, float, normalise) over the training split: separate steps "
          f"{input_pass['separate_images_per_s']:.0f} img/s, fused {input_pass['fused_images_per_s']:.0f} img/s, "
          f"{input_pass['speedup']:.2f}x", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-train-throughput-") as scratch:
        for round_index in range(args.rounds):
            rates = {}
            for which in (("harness", "plain") if round_index % 2 == 0 else ("plain", "harness")):
                if which == "harness":
                    record = run(dataclasses.replace(config, out=scratch))
                    rates[which] = record.train_images_per_s
                else:
                    rates[which] = plain_epoch(model, optimizer, images, targets, resolved.batch_size, mean, std,
                                               epoch_generator(resolved.seed, round_index, 0))
            harness_rate, plain_rate = rates["harness"], rates["plain"]
            rows.append({"round": round_index, "harness_images_per_s": harness_rate, "plain_images_per_s": plain_rate,
                         "ratio": harness_rate / plain_rate, "harness_wall_time_s": record.wall_time_s})
            print(f"round {round_index + 1}/{args.rounds}: harness {harness_rate:.0f} img/s, plain loop "
                  f"{plain_rate:.0f} img/s, ratio {harness_rate / plain_rate:.3f}", flush=True)
    summary = {
        "harness_images_per_s": statistics.median(r["harness_images_per_s"] for r in rows),
        "plain_images_per_s": statistics.median(r["plain_images_per_s"] for r in rows),
        "ratio": statistics.median(r["ratio"] for r in rows),
    }
    print(f"median: harness {summary['harness_images_per_s']:.0f} img/s, plain loop "
          f"{summary['plain_images_per_s']:.0f} img/s, harness / plain {summary['ratio']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "benchmark": "train_throughput",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                        "load_average_at_start": load_at_start},
            "torch": torch.__version__,
            "settings": {"dataset": resolved.dataset, "model": resolved.model, "augmentation": resolved.augmentation,
                         "size": resolved.size, "batch_size": resolved.batch_size, "rounds": args.rounds,
                         "train_images": len(images)},
            "rounds": rows,
            "median": summary,
            "input_pass": input_pass,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
