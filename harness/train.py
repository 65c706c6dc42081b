"""The protocol's training loop and test scoring, identical for every model plugin.

What the protocol fixes happens here and nowhere else: the two parameter groups (head and
backbone learning rates), SGD with momentum, the step schedule, the mean BCE loss, ignored
labels trained as positives, the batch size, and one scoring pass after the last epoch.
A checkpoint is written atomically after every epoch; resuming from it continues the same
run bit for bit on a CPU, because every epoch's data order and augmentation draws come from
generators seeded by (seed, epoch) and the global RNG states are saved.
"""

from __future__ import annotations

import contextlib
import io
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness import pipeline
from harness.distributed import World, gather_rows, shard_of_batch, sum_over_processes
from harness.errors import PluginError, UserError
from harness.protocol import Protocol
from harness.results import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainSetup:
    """Everything the loop needs besides the model: data arrays, device and precision."""

    train_images: np.ndarray  # (N, S, S, 3) uint8
    train_targets: np.ndarray  # (N, C) float32 0/1
    test_images: np.ndarray
    protocol: Protocol
    augment: Callable
    seed: int
    device: Any  # torch.device
    precision: str  # "fp32" or "bf16"
    world: World = field(default_factory=World)
    progress: bool = True
    eval_batch_size: int = 64
    augmentation_call: Callable = contextlib.nullcontext  # context naming the plugin on failure
    model_call: Callable = contextlib.nullcontext


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, stream: int):
    """A CPU generator for one epoch and purpose (0: data order, 1: augmentation).

    Every process draws the same numbers: each augments the whole global batch alike and
    then trains on its own share, so several processes see exactly what one would.
    """
    import torch

    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0]))


def in_head(name: str, head_prefixes: tuple[str, ...]) -> bool:
    """Whether parameter ``name`` belongs to the head: a prefix is a module path (``fc`` matches
    ``fc.weight``, not ``fc2.weight``)."""
    return any(name == p or name.startswith(p + ".") for p in head_prefixes)


def parameter_groups(model, head_prefixes: tuple[str, ...], protocol: Protocol, model_name: str):
    """Split parameters into (head, backbone) by module-path prefix; both must be non-empty."""
    head, backbone = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (head if in_head(name, head_prefixes) else backbone).append(parameter)
    if not head or not backbone:
        which = "no" if not head else "every"
        raise PluginError(
            f"model {model_name!r}: head_prefixes {head_prefixes} match {which} trainable parameter; "
            f"they must name the classifier's module (e.g. 'fc'); `bench check` shows the parameter names"
        )
    return [
        {"params": head, "lr": protocol.lr_head, "name": "head"},
        {"params": backbone, "lr": protocol.lr_backbone, "name": "backbone"},
    ]


def autocast(device, precision: str):
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


IMPLEMENTED_RULES = {
    "optimizer": "sgd",
    "loss": "bce_with_logits_mean",
    "test_transform": "resize_square",
    "ignored_labels_in_training": "positive",
    "evaluation": "last_epoch",
}


def check_implemented(protocol: Protocol) -> None:
    """Refuse a protocol whose rules this trainer does not implement, rather than ignore them.

    (``mixup_epochs`` is carried out by the ``mixup`` augmentation, which receives the epoch.)
    """
    for field_name, implemented in IMPLEMENTED_RULES.items():
        if getattr(protocol, field_name) != implemented:
            raise UserError(
                f"protocol {protocol.name!r}: {field_name}={getattr(protocol, field_name)!r} is not implemented "
                f"by this harness (it implements {implemented!r})"
            )


class Trainer:
    """Trains one model under a protocol and scores the test split."""

    def __init__(self, model, head_prefixes: tuple[str, ...], setup: TrainSetup, model_name: str):
        import torch

        self.setup = setup
        protocol = setup.protocol
        check_implemented(protocol)
        self.channels_last = setup.device.type == "cuda"
        model = model.to(setup.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            parameter_groups(model, head_prefixes, protocol, model_name),
            lr=protocol.lr_head,
            momentum=protocol.momentum,
            weight_decay=protocol.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(protocol.lr_milestones), gamma=protocol.lr_gamma
        )
        if setup.world.size > 1:
            if setup.device.type == "cuda":  # PyTorch's SyncBatchNorm runs on GPUs only
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            device_ids = [setup.device.index] if setup.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        self.model = model
        self.loss = torch.nn.BCEWithLogitsLoss()
        self.mean, self.std = pipeline.normalization(protocol.normalize_mean, protocol.normalize_std, setup.device)
        self.epoch = 0
        self.log: list[dict] = []
        self.earlier_wall_time_s = 0.0  # wall time of the segments before a resume

    @property
    def bare_model(self):
        return getattr(self.model, "module", self.model)

    # -- checkpoints ---------------------------------------------------------------------

    def state(self, wall_time_s: float) -> dict:
        import torch

        return {
            "epoch": self.epoch,
            "wall_time_s": wall_time_s,
            "model": self.bare_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "log": self.log,
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    def save_checkpoint(self, run_dir: Path, wall_time_s: float) -> None:
        """Write everything a resume needs; ``wall_time_s`` is the run's wall time so far."""
        import torch

        buffer = io.BytesIO()
        torch.save(self.state(wall_time_s), buffer)
        atomic_write(run_dir / CHECKPOINT_FILE, lambda stream: stream.write(buffer.getvalue()))

    def load_checkpoint(self, path: Path) -> None:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=False)
        self.bare_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.log, self.earlier_wall_time_s = state["epoch"], state["log"], state["wall_time_s"]
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    # -- training ------------------------------------------------------------------------

    def train_epoch(self) -> dict:
        """One epoch over the training split in the epoch's seeded order."""
        import torch
        from tqdm import tqdm

        setup, protocol, world = self.setup, self.setup.protocol, self.setup.world
        order = torch.randperm(len(setup.train_images), generator=epoch_generator(setup.seed, self.epoch, 0)).numpy()
        global_batches = [order[i:i + protocol.batch_size] for i in range(0, len(order), protocol.batch_size)]
        if world.size > 1 and len(global_batches[-1]) < world.size:
            global_batches.pop()  # too small to give every process a sample
        augment_generator = epoch_generator(setup.seed, self.epoch, 1)
        self.model.train()
        loss_sum = torch.zeros((), device=setup.device)
        seen = 0
        start = time.perf_counter()
        batches = pipeline.Batches(setup.train_images, setup.train_targets, global_batches,
                                   pin_memory=setup.device.type == "cuda")
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{protocol.epochs}",
                   unit="batch", disable=not (setup.progress and world.is_main), leave=False)
        for images_uint8, targets in bar:
            images = pipeline.to_model_input(images_uint8, setup.device, self.channels_last)
            targets = targets.to(setup.device, non_blocking=True)
            with setup.augmentation_call():
                images, targets = setup.augment(images, targets, self.epoch, augment_generator)
            if world.size > 1:  # every process augmented the global batch alike; train on this one's share
                mine = shard_of_batch(np.arange(images.shape[0]), world)
                images, targets = images[mine[0]:mine[-1] + 1], targets[mine[0]:mine[-1] + 1]
            images = pipeline.normalize(images, self.mean, self.std)
            with setup.model_call(), autocast(setup.device, setup.precision):
                logits = self.model(images)
            loss = self.loss(logits.float(), targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * images.shape[0]
            seen += images.shape[0]
            bar.set_postfix_str(f"{seen * world.size / (time.perf_counter() - start):.0f} img/s (all processes)", refresh=False)
        if setup.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        total_seen = sum_over_processes(seen, world)
        record = {
            "epoch": self.epoch,
            "lr": {group["name"]: group["lr"] for group in self.optimizer.param_groups},
            "loss": sum_over_processes(float(loss_sum), world) / max(total_seen, 1),
            "seconds": seconds,
            "images_per_s": total_seen / seconds,
        }
        self.scheduler.step()
        self.epoch += 1
        self.log.append(record)
        return record

    def score(self, images_uint8: np.ndarray) -> tuple[np.ndarray, float]:
        """Logits for every test image (each exactly once, over all processes) and images/s."""
        import torch
        from tqdm import tqdm

        setup, world = self.setup, self.setup.world
        shard = np.array_split(np.arange(len(images_uint8)), world.size)[world.rank]
        model = self.bare_model.eval()
        outputs = []
        start = time.perf_counter()
        chunks = [shard[i:i + setup.eval_batch_size] for i in range(0, len(shard), setup.eval_batch_size)]
        batches = pipeline.Batches(images_uint8, np.zeros((len(images_uint8), 1), np.float32), chunks,
                                   pin_memory=setup.device.type == "cuda")
        with torch.inference_mode():
            for batch, _ in tqdm(batches, desc="scoring test images", unit="batch",
                                 disable=not (setup.progress and world.is_main), leave=False):
                images = pipeline.normalize(
                    pipeline.to_model_input(batch, setup.device, self.channels_last), self.mean, self.std
                )
                with autocast(setup.device, setup.precision):
                    outputs.append(model(images).float())
        scores = torch.cat(outputs).cpu().numpy() if outputs else np.zeros((0, 0), np.float32)
        seconds = time.perf_counter() - start
        return gather_rows(scores, world), len(images_uint8) / seconds
