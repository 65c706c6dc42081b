"""Training and evaluation images/s of the paper's backbones, in the paper's style and the harness's.

    python benchmarks/gpu_throughput.py --json gpu.json              # ResNet-101 and VGG16, 448 px, batch 16
    python benchmarks/gpu_throughput.py --compile --json gpu.json    # adds the torch.compile mode
    python benchmarks/gpu_throughput.py --quick                      # CPU smoke check: resnet18, 64 px, few steps

Training modes (batch 16; SGD with the wang2019 head/backbone learning rates and momentum; mean BCE):

- ``paper``: fp32 eager, NCHW, TF32 off, cudnn.benchmark off, pageable host memory;
- ``default``: what ``bench run`` does on a GPU: bf16 autocast, channels_last, TF32 and
  cudnn.benchmark (``runner._configure_precision``), pinned memory and non-blocking copies,
  and no host synchronisation inside the step;
- ``default+cuda-graphs``: ``default`` with forward, backward and the SGD step captured once
  in a CUDA graph and replayed on static input tensors (CUDA only);
- ``default+compile`` (``--compile``): ``default`` with the model wrapped in ``torch.compile``.

Inputs: ``synthetic`` is one batch already on the device (the step alone); ``pipeline`` is the
harness's input from JPEG files this script writes to local disk: ``image_cache`` built first,
then every step ``Batches`` → ``random_flips`` → ``to_model_input`` (flip, float conversion and
normalisation in one pass), as in ``Trainer.train_epoch``. A pipeline row's cost is how much slower it is than synthetic.
Evaluation rows: eval mode under ``inference_mode``, batch 256 on a GPU, for ``paper`` (fp32)
and ``default`` (bf16).

Warm-up steps, graph capture and compilation are not timed; each timed block of steps ends
with a device synchronisation, and the median images/s of the blocks is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import gc
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from harness import pipeline
from harness.protocol import IMAGENET_MEAN, IMAGENET_STD, WANG2019
from harness.registry import Registry
from harness.runner import _configure_precision
from harness.train import autocast, epoch_generator, parameter_groups
from input_pipeline import random_labels, write_jpegs

MODES = ("paper", "default", "default+cuda-graphs", "default+compile")
EVAL_MODES = ("paper", "default")
FULL = {"models": "resnet101,vgg16", "size": 448, "warmup": 10, "steps": 30, "repeats": 3, "eval_steps": 8,
        "images": 512}
QUICK = {"models": "resnet18", "size": 64, "warmup": 2, "steps": 3, "repeats": 2, "eval_steps": 2, "images": 64}
GRAPH_CHECK_STEPS = 3
GRAPH_CHECK_TOLERANCE = 0.05


@dataclasses.dataclass
class Setup:
    """A model, its optimizer and loss, and how the mode feeds it."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss: torch.nn.Module
    device: torch.device
    precision: str
    channels_last: bool
    pinned: bool

    def cast(self):
        return autocast(self.device, self.precision)

    def flags(self) -> dict:
        return {"precision": self.precision, "channels_last": self.channels_last, "pinned_memory": self.pinned,
                "tf32": torch.backends.cuda.matmul.allow_tf32 and self.device.type == "cuda",
                "cudnn_benchmark": torch.backends.cudnn.benchmark and self.device.type == "cuda"}


def configure(mode: str, device: torch.device) -> str:
    """Sets the backend flags of ``mode``; returns its precision."""
    if mode != "paper":
        return _configure_precision("auto", device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = False
    return "fp32"


def build(registry: Registry, name: str, mode: str, device: torch.device, classes: int, seed: int) -> Setup:
    """The model with random weights (speed does not depend on them) and the protocol's SGD."""
    precision = configure(mode, device)
    gpu_default = mode != "paper" and device.type == "cuda"
    torch.manual_seed(seed)
    spec = registry.get("model", name).spec
    model = spec.build(classes, False).to(device)
    if gpu_default:
        model = model.to(memory_format=torch.channels_last)
    head_prefixes = tuple(getattr(model, "head_prefixes", spec.head_prefixes))
    optimizer = torch.optim.SGD(parameter_groups(model, head_prefixes, WANG2019, name), lr=WANG2019.lr_head,
                                momentum=WANG2019.momentum, weight_decay=WANG2019.weight_decay)
    return Setup(model, optimizer, torch.nn.BCEWithLogitsLoss(), device, precision, gpu_default, gpu_default)


def step_body(setup: Setup, images, targets, cast) -> torch.Tensor:
    """Forward, loss, backward and SGD update, as ``Trainer.train_epoch`` does them."""
    with cast():
        logits = setup.model(images)
    loss = setup.loss(logits.float(), targets)
    loss.backward()
    setup.optimizer.step()
    return loss


def eager_step(setup: Setup, images, targets) -> None:
    setup.optimizer.zero_grad(set_to_none=True)
    step_body(setup, images, targets, setup.cast)


class GraphedStep:
    """Forward, backward and the SGD update captured once in a CUDA graph, replayed on static tensors.

    The warm-up steps run on a side stream, as capture requires; they also let cudnn.benchmark
    choose its kernels and create SGD's momentum buffers, so the captured update only changes
    them in place (SGD keeps no step count, so unlike Adam it needs no ``capturable`` flag).
    Gradients are set to None before capture: backward then allocates them from the graph's
    pool and every replay overwrites them. The learning rates are constants in the graph; a
    schedule step would need a new capture. Autocast's weight-cast cache is off inside the graph.
    """

    def __init__(self, setup: Setup, images, targets, warmup: int):
        self.images, self.targets = images.clone(), targets.clone()

        def cast():
            return torch.autocast("cuda", dtype=torch.bfloat16, enabled=setup.precision == "bf16", cache_enabled=False)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(max(warmup, 1)):
                setup.optimizer.zero_grad(set_to_none=True)
                step_body(setup, self.images, self.targets, cast)
        torch.cuda.current_stream().wait_stream(side)
        setup.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = step_body(setup, self.images, self.targets, cast)

    def __call__(self, images=None, targets=None) -> None:
        if images is not None:
            self.images.copy_(images)
            self.targets.copy_(targets)
        self.graph.replay()


def flat_parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in model.parameters()])


def graph_error(setup: Setup, graphed: GraphedStep, batches: list) -> float:
    """Relative distance between the weights after the same steps replayed and run eagerly.

    ``|θ_graph − θ_eager| / |θ_eager − θ_start|`` from one starting state: near 0 when the
    graph computes the eager step (up to bf16 and kernel-order noise), near 1 or more when it
    reads stale inputs or skips an update. The CUDA generator is reseeded before each step of
    either, so that dropout (VGG16's classifier) draws the same masks: a replay takes its
    random offsets from the generator's state at replay time, as an eager step does.
    """
    reference = Setup(*copy.deepcopy((setup.model, setup.optimizer)), setup.loss, setup.device,
                      setup.precision, setup.channels_last, setup.pinned)
    start = flat_parameters(setup.model)
    for seed, (images, targets) in enumerate(batches):
        torch.cuda.manual_seed(seed)
        graphed(images, targets)
        torch.cuda.manual_seed(seed)
        eager_step(reference, images, targets)
    eager = flat_parameters(reference.model)
    return float((flat_parameters(setup.model) - eager).norm() / (eager - start).norm())


def input_stream(images: np.ndarray, labels: np.ndarray, batch: int, setup: Setup, seed: int, train: bool):
    """Endless model inputs from the image cache, made the way the trainer (or scorer) makes them.

    Only full batches, so that a CUDA graph's static shapes hold.
    """
    mean, std = pipeline.normalization(IMAGENET_MEAN, IMAGENET_STD, setup.device)
    for epoch in itertools.count():
        order = torch.randperm(len(images), generator=epoch_generator(seed, epoch, 0)).numpy() if train \
            else np.arange(len(images))
        chunks = [order[i:i + batch] for i in range(0, len(order) - batch + 1, batch)]
        flips = epoch_generator(seed, epoch, 1)
        batches = pipeline.Batches(pipeline.ResizedImages(images), labels, chunks, pin_memory=setup.pinned)
        with contextlib.closing(iter(batches)) as stream:
            for images_uint8, targets in stream:
                flip = pipeline.random_flips(len(images_uint8), flips, setup.device) if train else None
                yield (pipeline.to_model_input(images_uint8, setup.device, setup.channels_last, flip=flip, mean=mean,
                                               std=std), targets.to(setup.device, non_blocking=True))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_rate(step, batch: int, warmup: int, steps: int, repeats: int, device: torch.device) -> dict:
    """Median images/s over ``repeats`` blocks of ``steps`` calls, after ``warmup`` untimed calls."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warmup_seconds = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        rates.append(batch * steps / (time.perf_counter() - start))
    return {"images_per_s": statistics.median(rates), "block_images_per_s": rates, "warmup_seconds": warmup_seconds}


def host_syncs(step, device: torch.device) -> int | None:
    """How many host synchronisations one call of ``step`` makes (CUDA's sync debug mode); None on a CPU."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    synchronize(device)
    return sum("synchroniz" in str(w.message) for w in caught)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def run_mode(registry, name: str, mode: str, data, args, device) -> list[dict]:
    """Every row of one model in one mode: training on both inputs, then evaluation (paper, default)."""
    images, labels = data
    setup = build(registry, name, mode, device, labels.shape[1], args.seed)
    size, batch = args.size, args.batch
    synthetic = (torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last if setup.channels_last else torch.contiguous_format),
        (torch.rand(batch, labels.shape[1], device=device) < 0.075).float())
    extra = {}
    if mode == "default+cuda-graphs":
        graphed = GraphedStep(setup, *synthetic, args.warmup)
        checks = [(torch.randn_like(synthetic[0]), torch.rand_like(synthetic[1]).lt(0.075).float())
                  for _ in range(GRAPH_CHECK_STEPS)]
        error = graph_error(setup, graphed, checks)
        extra = {"graph_check_relative_error": error, "graph_check_ok": error < GRAPH_CHECK_TOLERANCE}
        synthetic_step, train_step = graphed, graphed
    else:
        if mode == "default+compile":
            setup = dataclasses.replace(setup, model=torch.compile(setup.model))

        def train_step(images_on_device, targets) -> None:
            eager_step(setup, images_on_device, targets)

        def synthetic_step() -> None:
            train_step(*synthetic)

    common = {"model": name, "mode": mode, "flags": setup.flags(), **extra}
    timing = (args.warmup, args.steps, args.repeats, device)
    rows = [{**common, "phase": "train", "input": "synthetic", **measure_rate(synthetic_step, batch, *timing),
             "host_syncs_per_step": host_syncs(synthetic_step, device)}]
    with contextlib.closing(input_stream(images, labels, batch, setup, args.seed, train=True)) as stream:
        rows.append({**common, "phase": "train", "input": "pipeline",
                     **measure_rate(lambda: train_step(*next(stream)), batch, *timing),
                     "host_syncs_per_step": host_syncs(lambda: train_step(*next(stream)), device)})

    if mode in EVAL_MODES:
        setup.model.eval()
        eval_batch = min(args.eval_batch, len(images))
        frozen = torch.randn(eval_batch, 3, size, size, device=device).contiguous(
            memory_format=torch.channels_last if setup.channels_last else torch.contiguous_format)

        def infer(images_on_device) -> None:
            with setup.cast():
                setup.model(images_on_device)

        eval_timing = (eval_batch, min(args.warmup, 2), args.eval_steps, args.repeats, device)
        with torch.inference_mode():
            rows.append({**common, "phase": "eval", "input": "synthetic",
                         **measure_rate(lambda: infer(frozen), *eval_timing)})
            with contextlib.closing(input_stream(images, labels, eval_batch, setup, args.seed, train=False)) as stream:
                rows.append({**common, "phase": "eval", "input": "pipeline",
                             **measure_rate(lambda: infer(next(stream)[0]), *eval_timing)})
    return rows


def add_ratios(rows: list[dict]) -> None:
    """``vs_paper`` (same model, phase and input) and ``pipeline_cost_percent`` (same model, mode and phase)."""
    rate = {(r["model"], r["mode"], r["phase"], r["input"]): r.get("images_per_s") for r in rows}
    for row in rows:
        if row.get("images_per_s") is None:
            continue
        paper = rate.get((row["model"], "paper", row["phase"], row["input"]))
        row["vs_paper"] = row["images_per_s"] / paper if paper else None
        synthetic = rate.get((row["model"], row["mode"], row["phase"], "synthetic"))
        row["pipeline_cost_percent"] = (100 * (1 - row["images_per_s"] / synthetic)
                                        if row["input"] == "pipeline" and synthetic else None)


def print_table(record: dict) -> None:
    def number(value, pattern):
        return "" if value is None else pattern.format(value)

    table = []
    for row in record["rows"]:
        rate = number(row.get("images_per_s"), "{:.1f}") or row["status"]
        if row.get("graph_check_ok") is False:
            rate += " (graph check FAILED)"
        table.append((row["model"], row["phase"], row["mode"], row["input"], rate,
                      number(row.get("vs_paper"), "{:.2f}x"), number(row.get("pipeline_cost_percent"), "{:.1f}%")))
    print(f"{record['gpu'] or record['device']}, torch {record['torch']}, size {record['settings']['size']}, "
          f"batch {record['settings']['batch']} (eval {record['settings']['eval_batch']})")
    print(tabulate(table, headers=["model", "phase", "mode", "input", "img/s", "vs paper", "pipeline cost"],
                   colalign=("left", "left", "left", "left", "right", "right", "right"), disable_numparse=True))


def settings(args) -> dict:
    """Arguments not given on the command line take the --quick or full-run defaults."""
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.eval_batch is None:
        args.eval_batch = 16 if args.quick else (256 if args.device.type == "cuda" else 64)
    return {key: getattr(args, key) for key in (*FULL, "batch", "eval_batch", "modes", "seed", "quick")}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--models", default=None, help=f"comma-separated model names (default {FULL['models']})")
    parser.add_argument("--modes", default="paper,default,default+cuda-graphs",
                        help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--compile", action="store_true", help="add the default+compile mode")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a CPU smoke check")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--batch", type=int, default=WANG2019.batch_size)
    parser.add_argument("--eval-batch", type=int, default=None, help="default 256 on a GPU, 64 on a CPU, 16 with --quick")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before timing")
    parser.add_argument("--steps", type=int, default=None, help="training steps per timed block")
    parser.add_argument("--eval-steps", type=int, default=None, help="evaluation batches per timed block")
    parser.add_argument("--repeats", type=int, default=None, help="timed blocks (the median is reported)")
    parser.add_argument("--images", type=int, default=None, help="JPEG files written for the pipeline input")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where the JPEGs and cache go (default: temporary)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    args.modes = [m for m in args.modes.split(",") if m] + (["default+compile"] if args.compile else [])
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    args.modes = [m for m in MODES if m in args.modes]
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.exit(2, f"--device {args.device}: no CUDA device is visible; use --device cpu (with --quick for a "
                       f"short smoke check)\n")
    args.device = torch.device(args.device)
    if args.device.type == "cuda":
        torch.cuda.set_device(args.device)
    return args


def main() -> None:
    args = parse_args()
    device = args.device
    record_settings = settings(args)
    if args.images < max(args.batch, 1):
        sys.exit(f"--images {args.images}: need at least one batch ({args.batch})")
    if device.type == "cpu" and not args.quick:
        print("note: full settings on a CPU take hours; --quick is the CPU smoke check", flush=True)
    registry = Registry()
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-benchmark-")))
        cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="cache-", dir=workdir))
        os.environ["BENCH_CACHE_DIR"] = cache_dir
        paths = write_jpegs(workdir / "jpeg", args.images, args.seed)
        start = time.perf_counter()
        images = pipeline.image_cache(paths, args.size, "gpu-benchmark", pipeline.content_key(paths))
        cache_seconds = time.perf_counter() - start
        labels = random_labels(args.images, args.seed, args.classes)
        rows = []
        for name, mode in itertools.product(args.models.split(","), args.modes):
            if mode == "default+cuda-graphs" and device.type != "cuda":
                rows.append({"model": name, "mode": mode, "phase": "train", "input": "synthetic+pipeline",
                             "status": "n/a (needs CUDA)"})
                continue
            print(f"{name} {mode} ...", flush=True)
            try:
                rows += [{**row, "status": "ok"} for row in run_mode(registry, name, mode, (images, labels), args, device)]
            except Exception as error:
                rows.append({"model": name, "mode": mode, "phase": "train", "input": "synthetic+pipeline",
                             "status": f"failed: {one_line(error)}"})
            finally:
                torch._dynamo.reset()
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        del images
    add_ratios(rows)
    record = {
        "benchmark": "gpu_throughput",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "settings": record_settings,
        "cache_build_seconds": cache_seconds,
        "rows": rows,
    }
    print_table(record)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    failed = [f"{r['model']} {r['mode']}: {r['status']}" for r in rows if r["status"].startswith("failed")]
    failed += [f"{r['model']} {r['mode']}: graph replay differs from the eager step "
               f"(relative error {r['graph_check_relative_error']:.3g})"
               for r in rows if r.get("graph_check_ok") is False and r["input"] == "synthetic"]
    if failed:
        sys.exit("some modes failed:\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
