"""A dataset whose train and test splits share an image id, or an image file, is refused by
``bench run`` (a real process) before anything is trained or written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from test_run_safety import bench, one_error_line, run_args


def leaky_copy(tiny_root: Path, folder: Path) -> Path:
    shutil.copytree(tiny_root, folder)
    return folder


def test_a_test_image_id_also_in_train_is_refused(tiny_root, tmp_path):
    data = leaky_copy(tiny_root, tmp_path / "data")
    labels = data / "labels.csv"
    labels.write_text(labels.read_text().replace("test,test007,", "test,train042,"))
    line = one_error_line(bench(*run_args(data, tmp_path / "runs")))
    assert line == (f"Error: dataset 'tiny': 1 image id(s) are in both train and test, first 'train042'; a test image "
                    "seen in training inflates its scores: fix the split (`bench data verify --dataset tiny --data-root "
                    f"{data}` lists them)")
    assert not (tmp_path / "runs").exists()


def test_a_test_image_that_is_a_train_image_s_file_is_refused(tiny_root, tmp_path):
    data = leaky_copy(tiny_root, tmp_path / "data")
    (data / "test003.png").unlink()
    os.symlink(data / "train010.png", data / "test003.png")
    line = one_error_line(bench(*run_args(data, tmp_path / "runs")))
    assert line.startswith(f"Error: dataset 'tiny': test image 'test003' is the file {data / 'test003.png'} of train "
                           "image 'train010'; a test image seen in training inflates its scores")
    assert not (tmp_path / "runs").exists()
