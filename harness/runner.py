"""``bench run`` as a Python API: resolve once, build, check, train, score, record.

    from harness import run
    record = run(dataset="shapes", protocol="smoke")     # a RunRecord; record.path is the run folder

A run's settings make three hops: the options (``RunConfig``) resolve once to a
``ResolvedRun`` (stored as ``run.json``), which the trainer takes, and the measurements
made under it become the ``RunRecord`` (``result.json``). ``train_resolved`` is three steps:
``prepare_run`` (device, data, model, checks), ``train_run`` (the folder, the epochs,
checkpoints) and ``record_run`` (metrics, ``RunRecord.for_training``, the files).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import contracts, honesty, pipeline, recipes, weights
from harness.config import ResolvedRun, RunConfig, tf32_allowed
from harness.data import fingerprint, train_hash
from harness.distributed import World, barrier, finish, init_world
from harness.errors import PluginError, UserError, cut
from harness.machine import available_memory
from harness.interrupts import stop_signals, stopped_run
from harness.loggers import epoch_metrics, open_loggers
from harness.metrics import evaluate
from harness.progress import api_progress, log
from harness.registry import Component, Registry
from harness.results import (
    DatasetRecord,
    ModelRecord,
    Pretrained,
    RecipeRecord,
    RunRecord,
    WeightsFile,
)
from harness.files import atomic_write, human_bytes, write_json
from harness.rundir import (
    CHECKPOINT_FILE,
    LOG_FILE,
    MODEL_FILE,
    RUN_FILE,
    SCORES_FILE,
    claim,
    is_finished,
    publish,
    refuse_if_taken,
    run_lock,
    write_scores,
)
from harness.specs import DatasetInfo
from harness.splits import check_disjoint, write_train_split

PIPELINE_VERSION = "3"


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


def _configure_precision(precision: str, device) -> str:
    """The precision to train in (``auto``: bf16 autocast on GPUs, fp32 elsewhere; fp32 means
    strict fp32), after setting the backend flags it implies: TF32 where ``tf32_allowed``, and
    on a GPU cuDNN's autotuning in bf16 and its deterministic kernels in fp32."""
    import torch

    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    tf32 = tf32_allowed(str(device), precision)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = precision == "bf16"
        torch.backends.cudnn.deterministic = precision == "fp32"
    return precision


def check_batch_memory(run: ResolvedRun, device) -> None:
    """Refuse, before any work, a batch whose input alone cannot fit: per image S×S×3 bytes
    read plus two float32 copies (the model input and its normalised copy). A lower bound:
    the model's activations come on top."""
    per_batch = run.batch_size * run.size * run.size * 3 * (1 + 4 + 4)
    free = available_memory(device)
    if per_batch > free:
        raise UserError(
            f"size {run.size} with batch {run.batch_size} needs at least {human_bytes(per_batch)} of "
            f"{'GPU' if device.type == 'cuda' else 'host'} memory per batch for the input alone; "
            f"{human_bytes(free)} is available; choose a smaller --size or --batch-size"
        )


def load_dataset(component: Component, data_root: str | None, skip_missing: bool):
    """Load and check a dataset through its plugin; refusals name the dataset."""
    spec = component.spec
    root = Path(data_root) if data_root else None
    dataset = component.call("load", spec.load, root, {"skip_missing": skip_missing})
    contracts.check_splits(dataset.splits, f"dataset {spec.name!r}")
    if len(dataset.classes) < 3:
        raise PluginError(f"dataset {spec.name!r} has {len(dataset.classes)} classes; the top-3 metrics need at least 3")
    check_disjoint(dataset, spec.name, data_root)
    for split_name, split in dataset.splits.items():
        contracts.check_labels(split.labels, len(dataset.classes), f"dataset {spec.name!r}, split {split_name}")
    warnings = dataset.info.get("warnings") or []
    if warnings:
        log.warning(f"dataset {spec.name!r}: {len(warnings)} warning(s), first: {warnings[0].get('id')} "
                    f"({warnings[0].get('problem')}); `bench data verify` lists them")
    if dataset.problems:
        first = ", ".join(f"{p.get('id')} ({p.get('problem')})" for p in list(dataset.problems)[:3])
        only_missing = all(p.get("problem") == "image file not found" for p in dataset.problems)
        advice = " or pass --skip-missing to leave them out (the coverage is recorded)" if only_missing else ""
        where = f" --data-root {data_root}" if data_root else ""
        raise UserError(
            f"dataset {spec.name!r} has {len(dataset.problems)} problem(s), first: {first}; "
            f"run `bench data verify --dataset {spec.name}{where}`{advice}"
        )
    return dataset


def _image_arrays(dataset, run: ResolvedRun, world: World, input_crop: str | None) -> dict[str, pipeline.SplitImages]:
    """Each split's images at the run's size, their caches made here (with ``--cache``, where
    they fit; the main process first) so that a broken image or a full disk shows before the
    run folder is claimed: the test split's resized cache, and the training split's source
    for the augmentation's ``input_crop`` (the resized cache, or the original sizes for crops)."""
    arrays = {split: pipeline.SplitImages(dataset.splits[split].image_paths, run.size, name=f"{dataset.name}-{split}",
                                          fingerprint=run.fingerprint, cache=run.cache)
              for split in ("train", "test")}
    for turn in (True, False):  # the main process builds, then the others read
        if world.is_main == turn:
            arrays["test"].source(None)
            arrays["train"].source(input_crop)
        barrier(world)
    return arrays


def dataset_info(dataset, dataset_fingerprint: str) -> DatasetInfo:
    """What a model may see of its dataset: the train split's labels, read-only."""
    labels = np.array(dataset.splits["train"].labels, dtype=np.int8, copy=True)
    labels.flags.writeable = False
    return DatasetInfo(name=dataset.name, classes=tuple(dataset.classes), fingerprint=dataset_fingerprint,
                       train_labels=labels)


def build_model(component: Component, model_name: str, num_classes: int, pretrained: str,
                info: DatasetInfo | None, train_split_hash: str | None = None,
                size: int | None = None) -> tuple[Any, Pretrained, dict]:
    """``build`` through the plugin, with the weights it loads recorded; returns the model,
    the weights record and the context it was given (for ``result.json``: which labels, the
    input size when ``build`` declares ``size``)."""
    spec = component.spec
    kwargs: dict[str, Any] = {"variant": model_name.split(":", 1)[1]} if spec.takes_variant else {}
    context: dict[str, Any] = {}
    if info is not None and component.accepts(spec.build, "dataset"):
        kwargs["dataset"] = info
        context = {"dataset": info.name, "classes": len(info.classes), "fingerprint": info.fingerprint,
                   "train_labels": {"shape": list(info.train_labels.shape), "split_hash": train_split_hash}}
    if size is not None and component.accepts(spec.build, "size"):
        kwargs["size"] = context["size"] = size
    override = None if pretrained in ("imagenet", "none") else Path(pretrained)
    with weights.recording(override, model=model_name) as record:
        try:
            model = component.call("build", spec.build, num_classes, pretrained != "none", **kwargs)
        except PluginError as error:
            if record.files:
                loaded = record.files[-1]
                raise PluginError(f"{component.label}: build failed after loading weights file {loaded['file']}: is it "
                                  f"the file for this architecture? ({cut(str(error).split(': ', 1)[-1], 150)})") from error
            raise
    if pretrained != "none" and not record.files:
        raise PluginError(
            f"{component.label} did not load pretrained weights through harness.weights; use --pretrained none "
            "or fix the plugin (a run never falls back to random weights)"
        )
    mode = {"imagenet": "imagenet", "none": "none"}.get(pretrained, "file")
    return model, Pretrained(mode=mode, files=[WeightsFile(**f) for f in record.files]), context


def check_outputs(component: Component, model, sample, num_classes: int, device) -> None:
    """A forward pass in eval and in train mode on a copy: the logits must be (B, C), floating
    point and finite in both (a model may behave differently in each)."""
    import torch

    probe = copy.deepcopy(model).to(device)
    sample = sample.to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for train in (False, True):
            probe.train(train)
            mode = "train" if train else "eval"
            with torch.no_grad(), component.guard(f"forward in {mode} mode"):
                output = probe(sample)
            contracts.check_logits(output, sample.shape[0], num_classes, component.label,
                                   f"in {mode} mode for a batch of {sample.shape[0]}")


def _sample(dataset, size: int):
    """Two training images as a float batch, for the output checks."""
    import torch

    paths = dataset.splits["train"].image_paths[:2]
    images = np.stack([pipeline.decode_resized(p, size) for p in paths])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)


def resolve_resume(run_dir: Path, data_root: str | None = None,
                   plugins: tuple[str, ...] = ()) -> tuple[ResolvedRun, Registry]:
    """The stored run of an unfinished run folder, its plugin files re-hashed, and its registry;
    ``data_root`` moves the data (the fingerprint must still match). File, folder and module
    plugins are imported only when named again in ``plugins`` (``resume_plugins``)."""
    from harness.resume_plugins import plugins_named_again

    run_dir = Path(run_dir).expanduser().resolve()
    if is_finished(run_dir):
        raise UserError(f"{run_dir} is finished; nothing to resume")
    resolved = ResolvedRun.read(run_dir)
    if resolved.run_dir != run_dir:
        resolved = dataclasses.replace(resolved, out=str(run_dir.parent), run_id=run_dir.name)
    if data_root is not None:
        resolved = dataclasses.replace(resolved, data_root=str(Path(data_root).expanduser().resolve()))
    resolved = plugins_named_again(resolved, run_dir, plugins)
    resolved.check_plugin_files()
    registry = Registry(tuple(source.value for source in resolved.plugins), watch_torch=True)
    check_distribution_versions([source.plugin for source in resolved.plugins], registry, "resume the run")
    return resolved, registry


def check_distribution_versions(recorded, registry: Registry, action: str) -> None:
    """Refuse a recorded plugin (``PluginRecord``) of source ``distribution`` unless this
    registry loaded it from the same distribution at the same version; ``action`` ends the
    advice (``resume the run``). ``--resume`` and ``bench leaderboard reproduce`` use it."""
    loaded = {p.name: p for p in registry.plugins if p.source == "distribution"}
    for plugin in recorded:
        if plugin.source != "distribution":
            continue
        now = loaded.get(plugin.name)
        if now is None or now.error or (now.distribution, now.distribution_version) != (
                plugin.distribution, plugin.distribution_version):
            found = ("it is not installed" if now is None else f"it fails to load ({now.error})" if now.error
                     else f"{now.distribution} {now.distribution_version} is installed")
            raise UserError(f"plugin {plugin.name!r} came from {plugin.distribution} {plugin.distribution_version}, but "
                            f"{found}; install that version to {action}")


def run(config: RunConfig | None = None, *, resume: Path | str | None = None, data_root: str | None = None,
        **options) -> RunRecord:
    """Train and score one model; returns its ``RunRecord`` (``record.path`` is the run folder).

    ``run(dataset="shapes")`` is ``run(RunConfig(dataset="shapes"))``. ``resume=RUN_DIR``
    continues an unfinished run from its ``run.json`` and checkpoint (``data_root`` moves its
    data; ``plugins`` names its file, folder and module plugins again). On a non-zero torchrun
    rank it returns ``None``.
    """
    if resume is not None:
        if config is not None or set(options) - {"plugins"}:
            raise UserError("resume continues a run with its stored settings; give no other settings than plugins")
        resolved, registry = resolve_resume(Path(resume), data_root, tuple(options.get("plugins", ())))
    else:
        config = RunConfig.from_options(dataclasses.asdict(config) if config is not None else options)
        if data_root is not None:
            config = dataclasses.replace(config, data_root=data_root)
        registry = Registry(config.plugins, disabled=config.no_plugins, watch_torch=True)
        resolved = config.resolve(registry)
    registry.check_core_unchanged()
    with api_progress():  # progress shows even where nobody configured logging (a notebook)
        return train_resolved(resolved, registry, resume=resume is not None, overwrite=bool(config and config.overwrite))


def _components(resolved: ResolvedRun, registry: Registry) -> dict[str, Component]:
    return {
        "dataset": registry.get("dataset", resolved.dataset),
        "model": registry.get("model", resolved.model),
        "augmentation": registry.get("augmentation", resolved.augmentation),
        "loss": registry.get("loss", resolved.loss),
        "recipe": registry.get("recipe", resolved.recipe),
    }


@dataclass
class Prepared:
    """What training a resolved run needs, built and checked before its folder is claimed:
    ``run`` carries the dataset's fingerprint and the chosen device and precision."""

    run: ResolvedRun
    components: dict[str, Component]
    world: World
    dataset: Any
    train_split_hash: str | None
    model: Any
    pretrained: Pretrained
    context: dict[str, Any]
    head_prefixes: tuple[str, ...]
    arrays: dict[str, pipeline.SplitImages]
    train_targets: np.ndarray


@dataclass
class Training:
    """A run in training: its folder once claimed, its trainer, and the test scores it gave."""

    folder: Path | None = None
    trainer: Any = None
    recipe: RecipeRecord | None = None
    loggers: Any = None
    scores: np.ndarray | None = None
    eval_rate: float | None = None


def prepare_run(resolved: ResolvedRun, registry: Registry, world: World, *, resume: bool,
                overwrite: bool) -> Prepared:
    """Choose the device and precision, load and check the data, build and check the model,
    and cache the images: everything that can fail before the run folder is claimed."""
    from harness.train import seed_everything

    components = _components(resolved, registry)
    if resolved.batch_size % world.size:
        raise UserError(f"batch size {resolved.batch_size} does not divide over {world.size} processes")
    device = _choose_device(resolved.device, world)
    resolved = resolved.with_device(str(device), _configure_precision(resolved.precision, device))
    check_batch_memory(resolved, device)
    if world.is_main:
        refuse_if_taken(resolved.run_dir, overwrite=overwrite, resume=resume)  # before any work is done
    dataset = load_dataset(components["dataset"], resolved.data_root, resolved.skip_missing)
    found = fingerprint(dataset)
    if resolved.fingerprint is not None and found != resolved.fingerprint:
        raise UserError(
            f"dataset {resolved.dataset!r} at {resolved.data_root or 'its default place'} has fingerprint {found}, "
            f"but run {resolved.run_id} started on {resolved.fingerprint}; pass --data-root with the run's own data"
        )
    resolved = resolved.with_fingerprint(found)
    num_classes = len(dataset.classes)
    train_split_hash = train_hash(dataset)

    seed_everything(resolved.seed)
    model_component, loss_component = components["model"], components["loss"]
    model, pretrained, context = build_model(model_component, resolved.model, num_classes, resolved.pretrained,
                                             dataset_info(dataset, found), train_split_hash, resolved.size)
    registry.check_core_intact(model_component.label, "during build")
    head_prefixes = tuple(getattr(model, "head_prefixes", model_component.spec.head_prefixes))
    check_outputs(model_component, model, _sample(dataset, resolved.size), num_classes, device)
    honesty.check_gradients(model_component, model, loss_component, num_classes, resolved.size)
    arrays = _image_arrays(dataset, resolved, world, components["augmentation"].spec.input_crop)
    train_targets = (dataset.splits["train"].labels != 0).astype(np.float32)  # ignored (difficult) → positive
    return Prepared(run=resolved, components=components, world=world, dataset=dataset,
                    train_split_hash=train_split_hash, model=model, pretrained=pretrained, context=context,
                    head_prefixes=head_prefixes, arrays=arrays, train_targets=train_targets)


def train_run(prepared: Prepared, registry: Registry, training: Training, held: contextlib.ExitStack, *,
              resume: bool, overwrite: bool, started: float) -> None:
    """Claim the run folder (writing ``run.json``), continue from its checkpoint on a resume,
    train epoch by epoch with a checkpoint after each, and score the test split; fills
    ``training`` as it goes (a stop reports how far it got)."""
    from harness.train import Trainer, epoch_line

    resolved, world, components = prepared.run, prepared.world, prepared.components
    run_dir = resolved.run_dir
    folder = run_dir
    if world.is_main:
        held.enter_context(run_lock(run_dir))
        folder = claim(run_dir, overwrite=overwrite, resume=resume)
        write_json(folder / RUN_FILE, resolved.to_dict())
    barrier(world)
    training.folder = folder
    stop = held.enter_context(stop_signals())  # from here a signal stops the run at a step's end

    train_targets = prepared.train_targets
    steps = recipes.steps_per_epoch(len(train_targets), resolved.batch_size, world.size)
    trainer = training.trainer = Trainer(prepared.model, prepared.head_prefixes, resolved, components, world=world,
                                         steps_per_epoch=steps)
    recipe_component = components["recipe"]
    training.recipe = RecipeRecord(
        name=resolved.recipe, version=recipe_component.spec.version, plugin=recipe_component.plugin.provenance(),
        optimizer=recipes.class_name(trainer.optimizer),
        scheduler=None if trainer.scheduler is None else recipes.class_name(trainer.scheduler),
        steps_per_epoch=steps, ema_decay=recipe_component.spec.ema_decay,
    )
    checkpoint = folder / CHECKPOINT_FILE
    if resume and checkpoint.is_file():
        trainer.load_checkpoint(checkpoint)
    loggers = None
    if world.is_main:  # opened where the run starts or resumes, so that a resumed run's curves continue
        loggers = open_loggers(resolved, folder, registry, trainer.epoch,
                               trainer.epoch * trainer.steps_per_epoch(len(train_targets)))
    if loggers is not None:
        trainer.loggers = training.loggers = loggers
        held.callback(loggers.close, None)  # a run that stops early still closes its loggers
    trainer.stop = stop
    stop.check(world)
    while trainer.epoch < resolved.epochs:
        epoch = trainer.train_epoch(prepared.arrays["train"], train_targets)
        if world.is_main:
            elapsed = trainer.earlier_wall_time_s + time.perf_counter() - started
            trainer.save_checkpoint(folder, elapsed)
            write_json(folder / LOG_FILE, trainer.log)
            log.info(epoch_line(epoch, resolved.epochs, elapsed))
            if loggers is not None:
                loggers.epoch(epoch["epoch"], epoch_metrics(epoch))
        barrier(world)

    training.scores, training.eval_rate = trainer.score(prepared.arrays["test"])
    registry.check_core_intact(", ".join(components[k].label for k in ("model", "augmentation", "loss")) + " or "
                               + recipe_component.label, "during training")


def record_run(prepared: Prepared, training: Training, registry: Registry, started: float) -> RunRecord:
    """Evaluate the test scores, build the ``RunRecord`` and write the run's files:
    scores, weights, ``result.json``; then publish the folder (the checkpoint goes once the
    result is safely written)."""
    import torch

    resolved, components, dataset, trainer = prepared.run, prepared.components, prepared.dataset, training.trainer
    folder, run_dir = training.folder, resolved.run_dir
    test = dataset.splits["test"]
    write_scores(folder / SCORES_FILE, training.scores, test.labels, test.ids)
    write_train_split(folder, dataset.splits["train"].ids, dataset.splits["train"].labels)
    state = io.BytesIO()
    torch.save(trainer.bare_model.state_dict(), state)
    atomic_write(folder / MODEL_FILE, lambda stream: stream.write(state.getvalue()))
    model_component = components["model"]
    model_record, loss_record = model_component.provenance(), components["loss"].provenance()
    device = torch.device(resolved.chosen_device)
    record = RunRecord.for_training(
        resolved,
        metrics=evaluate(training.scores, test.labels),
        dataset=DatasetRecord(
            name=dataset.name, version=components["dataset"].spec.version,
            plugin=components["dataset"].plugin.provenance(), fingerprint=resolved.fingerprint,
            train_hash=prepared.train_split_hash, classes=list(dataset.classes),
            n_train=len(dataset.splits["train"]), n_test=len(test), coverage=dataset.coverage,
        ),
        model=ModelRecord(
            name=resolved.model, version=model_component.spec.version, plugin=model_component.plugin.provenance(),
            pretrained=prepared.pretrained, head_prefixes=list(prepared.head_prefixes),
            backbone=model_component.spec.backbone, context=prepared.context, params=model_record.params,
            upstream=model_record.upstream, normalization=dict(zip(("mean", "std"), map(list, trainer.normalization))),
            paper=model_component.spec.paper, code=model_component.spec.code,
        ),
        augmentation=components["augmentation"].provenance(),
        loss=loss_record,
        recipe=training.recipe,
        deviations=resolved.deviations(weights.init_used(prepared.pretrained), loss_record, training.recipe),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        world_size=prepared.world.size,
        pipeline={"version": PIPELINE_VERSION, "input_crop": components["augmentation"].spec.input_crop},
        plugins=registry.provenance(),
        wall_time_s=trainer.earlier_wall_time_s + time.perf_counter() - started,
        train_images_per_s=float(np.mean([r["images_per_s"] for r in trainer.log])),
        eval_images_per_s=training.eval_rate,
    )
    atomic_write(folder / "result.json", lambda stream: stream.write(record.to_json().encode()))
    (folder / CHECKPOINT_FILE).unlink(missing_ok=True)  # only once the result is safely written
    if training.loggers is not None:
        training.loggers.close(record)
    publish(folder, run_dir)
    record.path = run_dir
    return record


def train_resolved(resolved: ResolvedRun, registry: Registry, *, resume: bool = False, overwrite: bool = False) -> RunRecord | None:
    """Train a resolved run (``run.json``) with the plugins of ``registry``: ``prepare_run``,
    ``train_run``, ``record_run``. ``run`` and ``bench leaderboard reproduce`` both end here;
    on a non-main process it returns ``None``."""
    import torch

    started = time.perf_counter()
    held = contextlib.ExitStack()
    wants_cuda = resolved.device.startswith("cuda") or (resolved.device == "auto" and torch.cuda.is_available())
    world = init_world("cuda" if wants_cuda else "cpu")
    training = Training()  # what a stop leaves: the folder holding run.json, and the trainer
    try:
        prepared = prepare_run(resolved, registry, world, resume=resume, overwrite=overwrite)
        train_run(prepared, registry, training, held, resume=resume, overwrite=overwrite, started=started)
        if not world.is_main:
            return None
        return record_run(prepared, training, registry, started)
    except KeyboardInterrupt as error:  # Ctrl-C, SIGTERM, SIGUSR1: one line saying how to continue
        epoch = training.trainer.epoch if training.trainer else 0
        raise stopped_run(error, resolved.run_dir, training.folder, epoch, resolved.epochs) from None
    finally:
        held.close()
        finish(world)
