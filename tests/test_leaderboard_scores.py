"""The stored scores file: bit-exact, no pickles, and smaller than ``np.savez_compressed``."""

from __future__ import annotations

import io

import numpy as np
import pytest

from harness.errors import BadInput
from harness.leaderboard.packed_scores import from_planes, packed_bytes, read_packed, to_planes


def trained_like_logits(n: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 logits of a linear head on ReLU features, with class priors and positives higher."""
    rng = np.random.default_rng(seed)
    prior = rng.uniform(0.005, 0.2, c)
    labels = (rng.random((n, c)) < prior).astype(np.int8)
    features = np.maximum(rng.normal(size=(n, 64)).astype(np.float32), 0)
    weights = (rng.normal(size=(64, c)) / 8).astype(np.float32)
    logits = features @ weights + np.log(prior / (1 - prior)).astype(np.float32) + 4.0 * labels
    return logits.astype(np.float32), labels


def test_planes_hold_every_byte_of_every_score_and_decode_bit_for_bit(tmp_path):
    scores = np.array([[0.0, -0.0, 1.5], [np.inf, -np.inf, np.float32(1e-45)], [np.nan, 3.4e38, -2.25]], np.float32)
    planes = to_planes(scores)
    assert planes.shape == (4, 3, 3) and planes.dtype == np.uint8
    assert planes[:, 2, 0].tobytes() == np.float32(1.5).astype("<f4").tobytes()  # class 2 of image 0
    assert from_planes(planes).tobytes() == scores.tobytes()
    path = tmp_path / "s.scores.npz"
    path.write_bytes(packed_bytes(scores, np.zeros((3, 3), np.int8), ["a", "b", "c"]))
    again, labels, ids = read_packed(path)
    assert again.tobytes() == scores.tobytes() and again.dtype == np.float32 and ids.tolist() == ["a", "b", "c"]


def test_the_layout_is_smaller_than_savez_compressed_on_trained_like_logits():
    scores, labels = trained_like_logits(4000, 80)
    plain = io.BytesIO()
    np.savez_compressed(plain, scores=scores, labels=labels, ids=np.arange(4000).astype(str))
    packed = packed_bytes(scores, labels, np.arange(4000).astype(str))
    assert len(packed) < 0.93 * len(plain.getvalue())


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"score_planes": np.zeros((4, 2, 3), np.uint8), "labels": np.zeros((3, 2), np.int8),
          "ids": np.array([b"a", b"b", b"c"], dtype=object)},
         "holds Python objects, which are never loaded; a stored scores file holds numbers and strings only: "
         "restore it from version control"),
        ({"scores": np.zeros((3, 2), np.float32)}, "holds scores; expected score_planes, labels, ids"),
        ({"score_planes": np.zeros((3, 2, 3), np.uint8), "labels": np.zeros((3, 2), np.int8),
          "ids": np.array(["a", "b", "c"])}, "score_planes is uint8 (3, 2, 3); expected uint8 (4, classes, images)"),
        ({"score_planes": np.zeros((4, 2, 3), np.uint8), "labels": np.zeros((3, 2), np.int16),
          "ids": np.array(["a", "b", "c"])}, "labels is int16 (3, 2); expected int8 (3, 2)"),
    ],
)
def test_files_that_are_not_this_layout_are_refused_without_unpickling(tmp_path, arrays, message):
    path = tmp_path / "bad.scores.npz"
    np.savez(path, **arrays)
    with pytest.raises(BadInput) as refused:
        read_packed(path)
    assert str(refused.value) == f"{path}: {message}"


def test_a_single_npy_array_named_like_a_scores_file_is_one_line(tmp_path):
    path = tmp_path / "forged.scores.npz"
    np.save(tmp_path / "forged.npy", np.zeros((3, 2), np.float32))
    (tmp_path / "forged.npy").rename(path)
    with pytest.raises(BadInput) as refused:
        read_packed(path)
    assert str(refused.value) == (f"{path}: not an .npz archive (File is not a zip file); give the stored scores file "
                                  "as written")


def test_a_run_folders_scores_file_is_read_without_unpickling_or_unbounded_members(tmp_path, monkeypatch):
    """What submit, fuse and compare read from a stranger's run folder: one line, nothing executed."""
    from harness import files, rundir

    path = tmp_path / "scores.npz"
    np.savez(path, scores=np.zeros((3, 2), np.float32), labels=np.zeros((3, 2), np.int8),
             ids=np.array(["a", "b", "c"], dtype=object))
    with pytest.raises(BadInput) as refused:
        rundir.read_scores(tmp_path)
    assert str(refused.value) == (f"{path}: holds Python objects, which are never loaded; a scores file holds numbers "
                                  "and strings only")
    np.savez(path, scores=np.zeros((3, 2), np.float32), labels=np.zeros((3, 2), np.int8))
    scores, labels, ids = rundir.read_scores(tmp_path)
    assert scores.shape == (3, 2) and list(ids) == ["0", "1", "2"]
    monkeypatch.setattr(files, "MAX_ARRAY_BYTES", 16)
    with pytest.raises(BadInput) as refused:
        rundir.read_scores(tmp_path)
    assert str(refused.value) == f"{path}: scores.npy unpacks to more than 16 B; not a scores file"
