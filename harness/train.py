"""The protocol's training loop and test scoring, identical for every model plugin.

What the protocol fixes happens here and nowhere else: the two parameter groups (head and
backbone learning rates) handed to the run's recipe (the protocol's ``sgd-step``: SGD with
momentum and the step schedule; any other is a recorded deviation), the loss (the protocol's,
or a recorded deviation) computed in float32, ignored labels trained as positives, the
batch size, and one scoring pass after the last epoch. A checkpoint holding only tensors
and plain data is written atomically after every epoch; resuming from it continues the run
bit for bit on a CPU, because every epoch's data order and augmentation draws come from
generators seeded by (seed, epoch) and the global RNG states are saved.
"""

from __future__ import annotations

import io
import pickle
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import contracts, pipeline, recipes
from harness.config import ResolvedRun
from harness.declared import model_normalization
from harness.distributed import World, gather_rows, shard_of_batch, sum_over_processes
from harness.errors import PluginError, UserError
from harness.progress import bar
from harness.protocol import Protocol
from harness.files import atomic_write
from harness.rundir import CHECKPOINT_FILE

# Steps between checks of the loss for NaN/inf on a GPU (each check waits for the GPU);
# on a CPU every step is checked.
GPU_FINITE_CHECK_EVERY = 25


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, stream: int):
    """A CPU generator for one epoch and purpose (0: data order, 1: augmentation, 2: input crops).

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
    "test_transform": "resize_square",
    "crop_source": "original",
    "ignored_labels_in_training": "positive",
    "mixup_epochs": "even",
    "evaluation": "last_epoch",
}


def check_implemented(protocol: Protocol) -> None:
    """Refuse a protocol whose rules this trainer does not implement, rather than ignore them.

    (``mixup_epochs`` is carried out by the ``mixup`` augmentation, which receives the epoch;
    ``loss`` names a loss component.)
    """
    for field_name, implemented in IMPLEMENTED_RULES.items():
        if getattr(protocol, field_name) != implemented:
            raise UserError(
                f"protocol {protocol.name!r}: {field_name}={getattr(protocol, field_name)!r} is not implemented "
                f"by this harness (it implements {implemented!r})"
            )


class Trainer:
    """Trains one model under a resolved run and scores the test split.

    ``components`` maps ``model``, ``augmentation``, ``loss`` and ``recipe`` to registry
    components: every call into them goes through the component's ``guard``, which names it
    on failure. ``steps_per_epoch`` is what the recipe's schedule is told; the schedule and
    the EMA (when the recipe keeps one) advance after every optimizer step. ``run`` carries
    the device and precision it trains with (``ResolvedRun.with_device``).
    """

    def __init__(self, model, head_prefixes: tuple[str, ...], run: ResolvedRun, components: dict, *,
                 world: World, steps_per_epoch: int):
        import torch

        device = torch.device(run.chosen_device)
        self.run, self.components = run, components
        self.device, self.precision, self.world = device, run.chosen_precision, world
        self.rules = run.rules()
        check_implemented(self.rules)
        self.channels_last = device.type == "cuda"
        model = model.to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        recipe = components["recipe"]
        self.optimizer, self.scheduler = recipes.build(
            recipe, parameter_groups(model, head_prefixes, self.rules, run.model), self.rules, steps_per_epoch)
        self.ema = recipes.Ema(model, recipe.spec.ema_decay) if recipe.spec.ema_decay is not None else None
        if world.size > 1:
            if device.type == "cuda":  # PyTorch's SyncBatchNorm runs on GPUs only
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            device_ids = [device.index] if device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        self.model = model
        self.normalization = model_normalization(self.bare_model, components["model"].spec, components["model"].label)
        self.mean, self.std = pipeline.normalization(*self.normalization, device)
        self.epoch = 0
        self.log: list[dict] = []
        self.earlier_wall_time_s = 0.0  # wall time of the segments before a resume
        self.loggers = None  # a harness.loggers.RunLoggers that watches every step, on the main process
        self.stop = None  # a harness.interrupts.StopSignals, checked with the loss (every step on a CPU)

    @property
    def bare_model(self):
        return getattr(self.model, "module", self.model)

    # -- checkpoints ---------------------------------------------------------------------

    def state(self, wall_time_s: float) -> dict:
        """Everything a resume needs, as tensors and plain data only (loadable with ``weights_only``)."""
        import torch

        kind, keys, position, has_gauss, gauss = np.random.get_state()
        return {
            "epoch": self.epoch,
            "wall_time_s": wall_time_s,
            "model": self.bare_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else recipes.plain_state(self.scheduler.state_dict()),
            "ema": None if self.ema is None else self.ema.state,
            "log": self.log,
            "rng": {
                "python": random.getstate(),
                "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                          "has_gauss": int(has_gauss), "gauss": float(gauss)},
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    def save_checkpoint(self, folder: Path, wall_time_s: float) -> None:
        """Write everything a resume needs; ``wall_time_s`` is the run's wall time so far."""
        import torch

        buffer = io.BytesIO()
        torch.save(self.state(wall_time_s), buffer)
        atomic_write(folder / CHECKPOINT_FILE, lambda stream: stream.write(buffer.getvalue()))

    def load_checkpoint(self, path: Path) -> None:
        """Continue from ``path``, which is loaded with ``weights_only=True``: tensors and plain
        data only, never code (run folders travel between people)."""
        import torch

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as error:
            lines = str(error).strip().splitlines() or [type(error).__name__]
            # torch's weights-only refusal is a page of advice; its line naming the object is the reason.
            reason = next((line.strip() for line in lines if "unsupported global" in line.lower()), lines[0])
            raise UserError(
                f"{path}: not a checkpoint this harness wrote; it may hold code, so it is not loaded: delete it and "
                f"start again with --overwrite ({reason[:100]})"
            ) from None
        try:
            self.bare_model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if (self.scheduler is None) != (state["scheduler"] is None) or (self.ema is None) != (state["ema"] is None):
                raise ValueError("the checkpoint's scheduler or EMA is not this recipe's")
            if self.scheduler is not None:
                recipes.restore_state(self.scheduler, state["scheduler"])
            if self.ema is not None:
                self.ema.state = {key: value.to(self.ema.state[key].device) for key, value in state["ema"].items()}
            self.epoch, self.log, self.earlier_wall_time_s = int(state["epoch"]), list(state["log"]), float(state["wall_time_s"])
            rng = state["rng"]
            python = rng["python"]
            random.setstate((python[0], tuple(python[1]), python[2]))
            numpy = rng["numpy"]
            np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                                 numpy["has_gauss"], numpy["gauss"]))
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
            raise UserError(
                f"{path}: does not fit model {self.run.model!r} of this run ({' '.join(str(error).split())[:120]}); "
                "delete it and start again with --overwrite"
            ) from None
        if not 0 <= self.epoch <= self.rules.epochs:
            raise UserError(f"{path}: epoch {self.epoch} is outside 0…{self.rules.epochs}; delete it and start again")

    # -- training ------------------------------------------------------------------------

    def steps_per_epoch(self, n_train: int) -> int:
        """How many steps ``train_epoch`` takes over ``n_train`` images (its batching, counted)."""
        steps = -(-n_train // self.run.batch_size)
        last = n_train - (steps - 1) * self.run.batch_size
        return steps - 1 if self.world.size > 1 and last < self.world.size else steps

    def train_epoch(self, train_images, train_targets: np.ndarray) -> dict:
        """One epoch over the training split in the epoch's seeded order."""
        import torch

        run, world, device = self.run, self.world, self.device
        model_component, augmentation, loss_component = (self.components[k] for k in ("model", "augmentation", "loss"))
        order = torch.randperm(len(train_targets), generator=epoch_generator(run.seed, self.epoch, 0)).numpy()
        global_batches = [order[i:i + run.batch_size] for i in range(0, len(order), run.batch_size)]
        if world.size > 1 and len(global_batches[-1]) < world.size:
            global_batches.pop()  # too small to give every process a sample
        augment_generator = epoch_generator(run.seed, self.epoch, 1)
        self.model.train()
        loss_sum = torch.zeros((), device=device)
        first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
        check_every = GPU_FINITE_CHECK_EVERY if device.type == "cuda" else 1
        num_classes = train_targets.shape[1]
        seen = 0
        source = train_images.source(augmentation.spec.input_crop)  # prepared by the runner before the run began
        start = time.perf_counter()
        batches = pipeline.Batches(source, train_targets, global_batches, pin_memory=device.type == "cuda",
                                   device=device, crop_generator=epoch_generator(run.seed, self.epoch, 2))
        steps = bar(batches, desc=f"epoch {self.epoch + 1}/{run.epochs}", unit="batch")
        unlogged: list = []  # (step loss, learning rates) not yet read back for the loggers
        spec = augmentation.spec
        fused = spec.augment is None  # nothing between the input flip and the normalisation: one pass
        for step, (images_uint8, targets) in enumerate(steps):
            flips = pipeline.random_flips(len(images_uint8), augment_generator, device) if spec.input_flip else None
            images = pipeline.to_model_input(images_uint8, device, self.channels_last, flip=flips,
                                             mean=self.mean if fused else None, std=self.std if fused else None)
            targets = targets.to(device, non_blocking=True)
            if not fused:
                with augmentation.guard("augment"):
                    images, targets = spec.augment(images, targets, self.epoch, augment_generator)
            if world.size > 1:  # every process augmented the global batch alike; train on this one's share
                mine = shard_of_batch(np.arange(images.shape[0]), world)
                images, targets = images[mine[0]:mine[-1] + 1], targets[mine[0]:mine[-1] + 1]
            if not fused:
                images = pipeline.normalize(images, self.mean, self.std)
            with model_component.guard("forward"), autocast(device, self.precision):
                logits = self.model(images)
            contracts.check_logits_shape(logits, images.shape[0], num_classes, model_component.label,
                                         f"in train mode at epoch {self.epoch + 1}, step {step + 1}")
            with loss_component.guard("loss"), torch.autocast(device.type, enabled=False):
                loss = loss_component.spec.loss(logits.float(), targets.float())
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise PluginError(f"{loss_component.label} returned {shape}; a loss returns a scalar tensor")
            self.optimizer.zero_grad(set_to_none=True)
            with model_component.guard("backward"):
                loss.backward()
            if step == 0:
                held = recipes.held(self.optimizer)  # what the epoch's first step uses
            if self.loggers is not None:
                rates = {f"lr/{group['name']}": group["lr"] for group in self.optimizer.param_groups}
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.bare_model)
            loss_value = loss.detach()
            first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss_value),
                                         torch.tensor(step, device=device), first_bad_step)
            if self.loggers is not None:
                unlogged.append((loss_value, rates))
            if (step + 1) % check_every == 0 or step + 1 == len(batches):
                self._stop_if_not_finite(first_bad_step)
                if unlogged:
                    first = self.epoch * len(batches) + step + 1 - len(unlogged)
                    values = torch.stack([value for value, _ in unlogged]).tolist()
                    for offset, (value, (_, rates_then)) in enumerate(zip(values, unlogged)):
                        self.loggers.step(first + offset, {"loss": value, **rates_then})
                    unlogged.clear()
            loss_sum += loss_value * images.shape[0]
            seen += images.shape[0]
            if self.stop is not None and ((step + 1) % check_every == 0 or step + 1 == len(batches)):
                self.stop.check(world)  # a signal stops the run here, where no library is mid-call
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        total_seen = sum_over_processes(seen, world)
        record = {
            "epoch": self.epoch,
            "lr": {str(group.get("name", index)): group["lr"] for index, group in enumerate(held["param_groups"])},
            "loss": sum_over_processes(float(loss_sum), world) / max(total_seen, 1),
            "seconds": seconds,
            "images_per_s": total_seen / seconds,
            "optimizer": held,
        }
        self.epoch += 1
        self.log.append(record)
        return record

    def _stop_if_not_finite(self, first_bad_step) -> None:
        bad = int(first_bad_step)
        if bad >= 0:
            raise UserError(
                f"the loss of model {self.run.model!r} ({self.run.loss} loss) became NaN or infinite at epoch "
                f"{self.epoch + 1}, step {bad + 1}; the run stopped there (check the model's outputs, or the learning "
                "rate of a deviating protocol)"
            )

    def score(self, test_images) -> tuple[np.ndarray, float]:
        """Logits for every test image (each exactly once, over all processes) and images/s."""
        import torch

        world, device = self.world, self.device
        model_component = self.components["model"]
        count = len(test_images)
        shard = np.array_split(np.arange(count), world.size)[world.rank]
        model = self.bare_model.eval()
        if self.ema is not None:  # the recipe's EMA weights are the ones scored (and saved)
            model.load_state_dict(self.ema.state)
        outputs = []
        start = time.perf_counter()
        eval_batch = 256 if device.type == "cuda" else 64
        chunks = [shard[i:i + eval_batch] for i in range(0, len(shard), eval_batch)]
        batches = pipeline.Batches(test_images.source(None), np.zeros((count, 1), np.float32), chunks,
                                   pin_memory=device.type == "cuda", device=device)
        with torch.inference_mode():
            for batch, _ in bar(batches, desc="scoring test images", unit="batch"):
                images = pipeline.to_model_input(batch, device, self.channels_last, mean=self.mean, std=self.std)
                with model_component.guard("forward"), autocast(device, self.precision):
                    outputs.append(model(images).float())
        scores = torch.cat(outputs).cpu().numpy() if outputs else np.zeros((0, 0), np.float32)
        seconds = time.perf_counter() - start
        return gather_rows(scores, world), count / seconds


def epoch_line(record: dict[str, Any], epochs: int, elapsed_s: float) -> str:
    """The one log line of a finished epoch."""
    return (f"epoch {record['epoch'] + 1}/{epochs}  loss {record['loss']:.4f}  {record['images_per_s']:.0f} img/s  "
            f"{record['seconds']:.1f} s  (elapsed {elapsed_s:.0f} s)")

