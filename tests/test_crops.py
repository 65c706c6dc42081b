"""M2/M3's input crop is torchvision's RandomResizedCrop on the original image, draw for draw and pixel for pixel.

The reference is torchvision itself: ``RandomResizedCrop.get_params`` and
``RandomResizedCrop.__call__`` on original-size PIL images, with torch's global generator in
the state of the harness's generator. Tolerance 0: both cut and resize with PIL.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from harness import pipeline
from harness.train import epoch_generator

# (width, height): VOC and COCO landscape and portrait, a panorama and a tower beyond the 3/4–4/3
# ratios (the centre-crop fallback), and a thumbnail smaller than the output
SHAPES = [(500, 375), (375, 500), (640, 480), (420, 90), (70, 300), (47, 31)]


def photo(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth colour gradients with grain: content whose resampling errors would show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * rng.uniform(0.1, 1) + y * rng.uniform(0.1, 1) for _ in range(3)], axis=-1)
    return np.clip(base % 256 + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crops")
    paths = []
    for k, (width, height) in enumerate(SHAPES):
        image = Image.fromarray(photo(width, height, k))
        path = folder / f"{k}.{'png' if k % 2 else 'jpg'}"
        image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)
        paths.append(path)
    return paths


def torchvision_boxes(height: int, width: int, state: torch.Tensor, count: int) -> list[tuple[int, int, int, int]]:
    """``count`` successive ``get_params`` boxes with torch's global generator started from ``state``."""
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(state)
        return [transforms.RandomResizedCrop.get_params(torch.empty(3, height, width), [0.08, 1.0], [3 / 4, 4 / 3])
                for _ in range(count)]


@pytest.mark.parametrize("width,height", SHAPES + [(1000, 10), (10, 1000), (1, 1)])
def test_boxes_are_torchvisions_draws(width, height):
    generator = torch.Generator().manual_seed(width * 7 + height)
    expected = torchvision_boxes(height, width, generator.get_state(), 300)
    found = [pipeline.random_resized_crop_box(generator, height, width) for _ in range(300)]
    assert found == expected
    if width / height > 4 or height / width > 4:  # most tries fail there: the fallback is exercised
        fallback = ((height - min(height, round(width * 4 / 3))) // 2, (width - min(width, round(height * 4 / 3))) // 2,
                    min(height, round(width * 4 / 3)), min(width, round(height * 4 / 3)))
        assert fallback in found


@pytest.mark.parametrize("size", [64, 448])
def test_crops_equal_torchvisions_random_resized_crop_on_the_original_image(files, size):
    for k, path in enumerate(files):
        with Image.open(path) as image:
            original = image.convert("RGB")
        for seed in range(4):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                expected = np.asarray(transforms.RandomResizedCrop(size)(original))
            box = pipeline.random_resized_crop_box(torch.Generator().manual_seed(seed), original.height, original.width)
            found = pipeline.decode_cropped(path, box, size)
            assert found.shape == (size, size, 3) and found.dtype == np.uint8
            assert np.array_equal(found, expected), (path.name, seed, box)


def test_an_epochs_crops_are_drawn_per_image_in_the_epochs_order(files):
    size, seed, epoch = 96, 5, 3
    order = torch.randperm(len(files), generator=epoch_generator(seed, epoch, 0)).numpy()
    batches = [order[:4], order[4:]]
    images = pipeline.SplitImages(files, size, name="crops", fingerprint="f", cache=False, workers=2)
    labels = np.zeros((len(files), 1), np.float32)
    found = [b for b, _ in pipeline.Batches(images.source("random-resized"), labels, batches,
                                            crop_generator=epoch_generator(seed, epoch, 2))]
    crop = transforms.RandomResizedCrop(size)
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(epoch_generator(seed, epoch, 2).get_state())
        expected = []
        for index in order:
            with Image.open(files[index]) as image:
                expected.append(np.asarray(crop(image.convert("RGB"))))
    assert np.array_equal(torch.cat(found).numpy(), np.stack(expected))


def test_a_different_epoch_draws_different_crops(files):
    images = pipeline.SplitImages(files, 32, name="crops", fingerprint="f", cache=False)
    source, labels = images.source("random-resized"), np.zeros((len(files), 1), np.float32)
    order = [np.arange(len(files))]
    first, second = (next(iter(pipeline.Batches(source, labels, order, crop_generator=epoch_generator(0, e, 2))))[0]
                     for e in (0, 1))
    assert not torch.equal(first, second)


KILLABLE_CROP = '''
import os, signal
from harness import AugmentationSpec, hookimpl
from plugins.augmentations import augment_mixup

def augment(images, targets, epoch, generator):
    if os.environ.get("KILL_AT_EPOCH") == str(epoch):
        os.kill(os.getpid(), signal.SIGKILL)
    return augment_mixup(images, targets, epoch, generator)

@hookimpl
def register_augmentations(register):
    register(AugmentationSpec("killable-mixup", augment, "1", input_crop="random-resized"))
'''


@pytest.mark.slow
def test_an_m3_run_killed_and_resumed_equals_an_uninterrupted_one(tiny_root, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import TINY_PLUGIN

    plugin = tmp_path / "killable.py"
    plugin.write_text(KILLABLE_CROP)

    def run(out, *extra, kill_at=None):
        command = [sys.executable, "-m", "harness", "run", "--plugin", TINY_PLUGIN, "--plugin", str(plugin),
                   "--dataset", "tiny", "--data-root", str(tiny_root), "--model", "tiny-cnn", "--aug", "killable-mixup",
                   "--protocol", "smoke", "--size", "32", "--epochs", "3", "--device", "cpu", "--out", str(out),
                   "--quiet", *extra]
        environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "BENCH_CACHE_DIR": str(tmp_path / "cache")}
        if kill_at is not None:
            environment["KILL_AT_EPOCH"] = str(kill_at)
        return subprocess.run(command, env=environment, capture_output=True, text=True)

    run_id = "tiny-tiny-cnn-killable-mixup-32-smoke-seed0"
    for out in ("first", "second"):
        assert run(tmp_path / out).returncode == 0
    killed = run(tmp_path / "killed", kill_at=2)
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "killed" / run_id / "checkpoint.pt").is_file()
    resumed = subprocess.run([sys.executable, "-m", "harness", "run", "--resume", str(tmp_path / "killed" / run_id),
                              "--plugin", TINY_PLUGIN, "--plugin", str(plugin), "--quiet"], env={**os.environ, "BENCH_CACHE_DIR": str(tmp_path / "cache")},
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    scores = [np.load(tmp_path / out / run_id / "scores.npz")["scores"] for out in ("first", "second", "killed")]
    assert np.array_equal(scores[0], scores[1]) and np.array_equal(scores[0], scores[2])
    assert [p.name.split("-")[1] for p in (tmp_path / "cache" / "images").iterdir() if p.is_dir()] == ["test"]


def test_the_gpu_paths_crop_and_resize_is_within_one_level_of_pil(files):
    """``crop_and_resize`` (what runs on a GPU after nvJPEG), run here on the CPU: torch's antialiased
    bilinear in float, rounded, against PIL's fixed-point filter on the same pixels and boxes."""
    worst = 0
    for k, path in enumerate(files):
        with Image.open(path) as image:
            pixels = np.array(image.convert("RGB"))
        generator = torch.Generator().manual_seed(k)
        boxes = np.array([pipeline.random_resized_crop_box(generator, *pixels.shape[:2]) for _ in range(3)])
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)
        for size in (64, 448):
            found = pipeline.crop_and_resize([tensor] * 3, boxes, size).numpy().astype(int)
            expected = np.stack([pipeline.decode_cropped(path, box, size) for box in boxes]).astype(int)
            worst = max(worst, int(np.abs(found - expected).max()))
    assert worst == 1
