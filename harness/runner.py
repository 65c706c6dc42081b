"""``bench run`` as a Python API: resolve components, train under a protocol, score, record.

    from harness.runner import RunConfig, run
    run_dir = run(RunConfig(dataset="shapes", model="resnet18", protocol="smoke"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from harness import pipeline, results, weights
from harness.data import fingerprint
from harness.distributed import World, barrier, finish, init_world
from harness.errors import PluginError, UserError
from harness.protocol import Protocol, get_protocol
from harness.registry import Registry, one_line

RUN_CONFIG_FILE = "run.json"
MODEL_FILE = "model.pt"


@dataclass
class RunConfig:
    """One training run. ``None`` fields take the protocol's defaults."""

    dataset: str = "shapes"
    data_root: str | None = None
    model: str | None = None
    augmentation: str | None = None
    size: int | None = None
    protocol: str = "smoke"
    epochs: int | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    pretrained: str | None = None  # "imagenet", "none" or a file path
    out: str = "runs"
    run_id: str | None = None
    plugins: tuple[str, ...] = ()
    skip_missing: bool = False
    cache: bool = True
    overwrite: bool = False
    progress: bool = True


def default_run_id(dataset: str, model: str, augmentation: str, size: int, protocol: str, seed: int) -> str:
    """``{dataset}-{model}-{aug}-{size}-{protocol}-seed{seed}`` (``:`` → ``_``): the same cell, the same folder."""
    return f"{dataset}-{model}-{augmentation}-{size}-{protocol}-seed{seed}".replace(":", "_").replace("/", "_")


def _choose_device(requested: str, world: World):
    import torch

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {requested}: no CUDA device is visible; use --device cpu")
        if world.size > 1 or requested == "cuda":
            requested = f"cuda:{world.local_rank}"
        torch.cuda.set_device(torch.device(requested))
    elif requested != "cpu":
        raise UserError(f"--device {requested!r}: use auto, cpu, cuda or cuda:N")
    return torch.device(requested)


def _configure_precision(precision: str, device) -> tuple[str, bool]:
    """Returns (precision, tf32). bf16 autocast on GPUs by default; fp32 means strict fp32."""
    import torch

    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise UserError(f"--precision {precision!r}: use fp32 or bf16")
    tf32 = device.type == "cuda" and precision == "bf16"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = precision == "bf16"
        torch.backends.cudnn.deterministic = precision == "fp32"
    return precision, tf32


def _protocol_for(config: RunConfig, size: int) -> tuple[Protocol, dict]:
    base = get_protocol(config.protocol)
    protocol, deviations = base.with_overrides(epochs=config.epochs, batch_size=config.batch_size)
    if size not in base.sizes:
        deviations["sizes"] = {"protocol": list(base.sizes), "used": [size]}
    return protocol, deviations


def _init_used(pretrained_record: dict) -> str:
    """"imagenet" only when every weights file is the one torchvision published; "file" for others."""
    if pretrained_record["mode"] == "none":
        return "none"
    return "imagenet" if all(f["matches_published"] for f in pretrained_record["files"]) else "file"


def _load_dataset(component, config: RunConfig):
    spec = component.spec
    root = Path(config.data_root).expanduser() if config.data_root else None
    with plugin_call(component, "load"):
        dataset = spec.load(root, {"skip_missing": config.skip_missing})
    missing = [s for s in ("train", "test") if s not in dataset.splits]
    if missing:
        raise PluginError(f"dataset {spec.name!r} has no {' or '.join(missing)} split; a benchmark needs both")
    if len(dataset.classes) < 3:
        raise PluginError(f"dataset {spec.name!r} has {len(dataset.classes)} classes; the top-3 metrics need at least 3")
    for split_name, split in dataset.splits.items():
        bad = ~np.isin(split.labels, (1, 0, -1))
        if split.labels.shape[1:] != (len(dataset.classes),) or bad.any():
            raise PluginError(
                f"dataset {spec.name!r}, split {split_name}: labels must be N×{len(dataset.classes)} "
                f"with values 1, 0, -1; `bench check --component {spec.name}` shows the problem"
            )
    if dataset.problems:
        first = ", ".join(f"{p.get('id')} ({p.get('problem')})" for p in list(dataset.problems)[:3])
        only_missing = all(p.get("problem") == "image file not found" for p in dataset.problems)
        advice = " or pass --skip-missing to leave them out (the coverage is recorded)" if only_missing else ""
        raise UserError(
            f"dataset {spec.name!r} has {len(dataset.problems)} problem(s), first: {first}; "
            f"run `bench data verify --dataset {spec.name} --data-root {config.data_root}`{advice}"
        )
    return dataset


def _image_arrays(dataset, size: int, dataset_fingerprint: str, config: RunConfig, world: World):
    arrays = {}
    for split in ("train", "test"):
        paths = dataset.splits[split].image_paths
        if config.cache:
            key = _image_cache_key(dataset, split, dataset_fingerprint)
            if world.is_main:
                arrays[split] = pipeline.image_cache(paths, size, key, progress=config.progress)
            barrier(world)
            if not world.is_main:
                arrays[split] = pipeline.image_cache(paths, size, key, progress=False)
        else:
            arrays[split] = pipeline.decoded_images(paths, size)
    return arrays


@contextlib.contextmanager
def plugin_call(component, what: str):
    """Report anything but a ``UserError`` raised inside a plugin as one line naming the plugin."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        raise PluginError(
            f"{component.kind} {component.name!r} (plugin {component.plugin.name!r}): {what} raised "
            f"{one_line(error)}; `bench --verbose` shows the traceback"
        ) from error


def _image_cache_key(dataset, split: str, dataset_fingerprint: str) -> str:
    """The fingerprint covers ids and labels; the files' paths, sizes and times say which pixels."""
    digest = hashlib.sha256()
    for path in dataset.splits[split].image_paths:
        status = os.stat(path)
        digest.update(f"{path}\x1f{status.st_size}\x1f{status.st_mtime_ns}\x1e".encode())
    return f"{dataset.name}-{dataset_fingerprint}-{split}-{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold ``.<run-id>.lock`` beside the run folder for the whole run: one process per run."""
    from filelock import FileLock, Timeout

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir.parent / f".{run_dir.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{run_dir} is being written by another bench process; wait for it to finish") from None
    try:
        yield
    finally:
        lock.release()


def _build_model(component, model_name: str, num_classes: int, pretrained: str):
    spec = component.spec
    kwargs = {"variant": model_name.split(":", 1)[1]} if spec.takes_variant else {}
    override = None if pretrained in ("imagenet", "none") else Path(pretrained).expanduser()
    if override is not None and not override.is_file():
        raise UserError(f"--pretrained {pretrained}: no such file; give a weights file, imagenet or none")
    with weights.recording(override) as record, plugin_call(component, "build"):
        model = spec.build(num_classes, pretrained != "none", **kwargs)
    if pretrained != "none" and not record.files:
        raise PluginError(
            f"model {model_name!r} (plugin {component.plugin.name!r}) did not load pretrained weights through "
            f"harness.weights; use --pretrained none or fix the plugin (a run never falls back to random weights)"
        )
    mode = {"imagenet": "imagenet", "none": "none"}.get(pretrained, "file")
    return model, {"mode": mode, "files": record.files}


def _check_output(model, model_name: str, plugin_name: str, sample, num_classes: int) -> None:
    """One forward pass in eval mode on two test images: the logits must be (2, C)."""
    import torch

    model.eval()
    with torch.inference_mode():
        try:
            output = model(sample)
        except Exception as error:
            raise PluginError(f"model {model_name!r} (plugin {plugin_name!r}) failed on a test batch: "
                              f"{one_line(error)}; `bench --verbose` shows the traceback") from error
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (sample.shape[0], num_classes):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise PluginError(f"model {model_name!r} (plugin {plugin_name!r}) returned {shape} for a batch of "
                          f"{sample.shape[0]}; expected ({sample.shape[0]}, {num_classes}) logits")


def resume_config(run_dir: Path, **overrides: Any) -> RunConfig:
    """The stored configuration of an unfinished run, with ``overrides`` (device, data root, plugins)."""
    run_dir = Path(run_dir)
    if results.is_finished(run_dir):
        raise UserError(f"{run_dir} is finished; nothing to resume")
    path = run_dir / RUN_CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: no {RUN_CONFIG_FILE}; is it a run folder made by `bench run`?")
    stored = json.loads(path.read_text())
    stored["plugins"] = tuple(stored.get("plugins", ()))
    stored.update({k: v for k, v in overrides.items() if v not in (None, ())})
    stored.update(out=str(run_dir.parent), run_id=run_dir.name, overwrite=False)
    return RunConfig(**stored)


def run(config: RunConfig, *, resume: bool = False) -> Path:
    """Train and score one model; returns the run folder (see ``harness.results``)."""
    import torch

    from harness import metrics
    from harness.train import CHECKPOINT_FILE, Trainer, TrainSetup, seed_everything

    started = time.perf_counter()
    registry = Registry(config.plugins)
    base_protocol = get_protocol(config.protocol)
    dataset_component = registry.get("dataset", config.dataset)
    model_name = config.model or base_protocol.default_model
    augmentation_name = config.augmentation or base_protocol.default_augmentation
    model_component = registry.get("model", model_name)
    augmentation_component = registry.get("augmentation", augmentation_name)
    size = config.size or base_protocol.default_size
    pretrained = config.pretrained or base_protocol.init
    protocol, deviations = _protocol_for(config, size)

    held = contextlib.ExitStack()
    world = init_world("cuda" if config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        if protocol.batch_size % world.size:
            raise UserError(f"batch size {protocol.batch_size} does not divide over {world.size} processes")
        device = _choose_device(config.device, world)
        precision, tf32 = _configure_precision(config.precision, device)
        dataset = _load_dataset(dataset_component, config)
        dataset_fingerprint = fingerprint(dataset)
        run_id = config.run_id or default_run_id(dataset.name, model_name, augmentation_name, size, protocol.name, config.seed)
        run_dir = Path(config.out).expanduser() / run_id
        if world.is_main and results.is_finished(run_dir) and not config.overwrite:
            results.claim_run_dir(run_dir, overwrite=False)  # refuses, before any work is done

        seed_everything(config.seed)
        model, pretrained_record = _build_model(model_component, model_name, len(dataset.classes), pretrained)
        head_prefixes = tuple(getattr(model, "head_prefixes", model_component.spec.head_prefixes))
        init = _init_used(pretrained_record)
        if init != protocol.init:
            deviations["init"] = {"protocol": protocol.init, "used": init}
        sample = np.stack([pipeline.decode_resized(p, size) for p in dataset.splits["test"].image_paths[:2]])
        sample = torch.from_numpy(sample).permute(0, 3, 1, 2).float().div(255)
        _check_output(model, model_name, model_component.plugin.name, sample, len(dataset.classes))
        arrays = _image_arrays(dataset, size, dataset_fingerprint, config, world)
        train_targets = (dataset.splits["train"].labels != 0).astype(np.float32)  # ignored (difficult) → positive
        if world.is_main:
            held.enter_context(run_lock(run_dir))
            results.claim_run_dir(run_dir, overwrite=config.overwrite, resume=resume)
            results.write_json(run_dir / RUN_CONFIG_FILE, dataclasses.asdict(config) | {"overwrite": False})
        barrier(world)

        setup = TrainSetup(
            train_images=arrays["train"], train_targets=train_targets, test_images=arrays["test"],
            protocol=protocol, augment=augmentation_component.spec.augment, seed=config.seed,
            augmentation_call=lambda: plugin_call(augmentation_component, "augment"),
            model_call=lambda: plugin_call(model_component, "forward"),
            device=device, precision=precision, world=world, progress=config.progress,
            eval_batch_size=256 if device.type == "cuda" else 64,
        )
        trainer = Trainer(model, head_prefixes, setup, model_name)
        checkpoint = run_dir / CHECKPOINT_FILE
        if resume and checkpoint.is_file():
            trainer.load_checkpoint(checkpoint)
        while trainer.epoch < protocol.epochs:
            record = trainer.train_epoch()
            if world.is_main:
                trainer.save_checkpoint(run_dir, trainer.earlier_wall_time_s + time.perf_counter() - started)
                results.write_json(run_dir / "log.json", trainer.log)
                if config.progress:
                    print(f"epoch {record['epoch'] + 1}/{protocol.epochs}  loss {record['loss']:.4f}  "
                          f"{record['images_per_s']:.0f} img/s", flush=True)
            barrier(world)

        scores, eval_rate = trainer.score(arrays["test"])
        if not world.is_main:
            return run_dir
        test = dataset.splits["test"]
        metric_values = metrics.evaluate(scores, test.labels)
        results.write_scores(run_dir / results.SCORES_FILE, scores, test.labels, test.ids)
        state = io.BytesIO()
        torch.save(trainer.bare_model.state_dict(), state)
        results.atomic_write(run_dir / MODEL_FILE, lambda stream: stream.write(state.getvalue()))
        environment = results.environment()
        record = {
            "schema_version": results.RESULT_SCHEMA_VERSION,
            "run_id": run_id,
            "kind": "train",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "metrics_version": metrics.METRICS_VERSION,
            "metrics": metric_values,
            "dataset": {
                **dataset_component.provenance(dataset.name),
                "fingerprint": dataset_fingerprint,
                "coverage": dataset.coverage,
                "classes": list(dataset.classes),
                "n_train": len(dataset.splits["train"]),
                "n_test": len(test),
            },
            "model": {**model_component.provenance(model_name), "pretrained": pretrained_record,
                      "head_prefixes": list(head_prefixes)},
            "augmentation": augmentation_component.provenance(),
            "size": size,
            "protocol": {"name": protocol.name, "version": protocol.version,
                         "hash": base_protocol.hash, "deviations": deviations},
            "seed": config.seed,
            "device": str(device),
            "gpu": environment["gpu"],
            "world_size": world.size,
            "precision": precision,
            "tf32": tf32,
            "environment": environment,
            "wall_time_s": trainer.earlier_wall_time_s + time.perf_counter() - started,
            "train_images_per_s": float(np.mean([r["images_per_s"] for r in trainer.log])),
            "eval_images_per_s": eval_rate,
        }
        results.write_json(run_dir / results.RESULT_FILE, record)
        checkpoint.unlink(missing_ok=True)  # only once the result is safely written
        return run_dir
    finally:
        held.close()
        finish(world)
