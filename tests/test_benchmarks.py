"""The throughput benchmarks run end to end on tiny settings and write the JSON they promise.

Smoke tests only: no timing is asserted. ``OMP_WAIT_POLICY=PASSIVE`` keeps torch's threads
from spinning against other processes on a busy machine (see benchmarks/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_PLUGIN

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    result = subprocess.run([sys.executable, str(BENCHMARKS / name), *arguments], capture_output=True, text=True,
                            env=environment, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_input_pipeline_times_every_input_path_on_the_same_files(tmp_path):
    output = tmp_path / "input.json"
    result = run_script("input_pipeline.py", "--images", "32", "--size", "32", "--epochs", "1", "--workers", "2",
                        "--workdir", str(tmp_path / "work"), "--json", str(output))
    record = json.loads(output.read_text())
    assert record["benchmark"] == "input_pipeline" and "input_pipeline.py" in record["command"]
    assert record["settings"]["images"] == 32 and record["settings"]["size"] == 32
    assert record["machine"]["cpu_count"] >= 1 and len(record["machine"]["load_average_at_start"]) == 3
    paths = record["paths"]
    assert set(paths) == {"in_memory", "old", "crops_1_thread", "crops_threads", "crops_processes", "whole_threads",
                          "cache_warm", "cache_cold"}
    for path in paths.values():
        assert path["images_per_s"] > 0 and len(path["epoch_images_per_s"]) == 1 and path["ratio_to_old"] > 0
        assert path["uint8_images_per_s"] > 0 and len(path["epoch_uint8_images_per_s"]) == 1
    assert paths["old"]["ratio_to_old"] == paths["old"]["uint8_ratio_to_old"] == 1
    assert paths["cache_warm"]["disk_bytes"] == record["cache_build"]["bytes"] == 128 + 32 * 32 * 32 * 3
    assert paths["whole_threads"]["disk_bytes"] == 0 and 0 < paths["crops_threads"]["disk_bytes"] < 1000
    assert 50_000 < record["jpeg"]["mean_bytes"] < 250_000, "natural-image content gives photo-sized files"
    assert "exact crops, decoded per batch, 2 threads" in result.stdout
    assert list((tmp_path / "work").iterdir()) == [], "the files and caches are removed after the run"


def test_gpu_throughput_quick_runs_every_mode_it_can(tmp_path):
    output = tmp_path / "gpu.json"
    run_script("gpu_throughput.py", "--quick", "--device", "cpu", "--models", "smallcnn", "--size", "32",
               "--images", "32", "--warmup", "1", "--steps", "1", "--repeats", "1", "--eval-steps", "1",
               "--json", str(output))
    record = json.loads(output.read_text())
    assert {"benchmark", "command", "created", "device", "gpu", "torch", "settings", "cache_build_seconds",
            "rows"} <= record.keys()
    assert record["device"] == "cpu" and record["gpu"] is None and record["torch"] == torch.__version__
    measured = {(r["mode"], r["phase"], r["input"]): r for r in record["rows"] if r["status"] == "ok"}
    assert set(measured) == {(mode, phase, source) for mode in ("paper", "default")
                             for phase in ("train", "eval") for source in ("synthetic", "pipeline")}
    for row in measured.values():
        assert row["model"] == "smallcnn" and row["images_per_s"] > 0 and row["vs_paper"] > 0
        assert (row["pipeline_cost_percent"] is None) == (row["input"] == "synthetic")
    assert measured[("paper", "train", "synthetic")]["vs_paper"] == 1
    assert measured[("paper", "train", "synthetic")]["flags"]["precision"] == "fp32"
    graphs = [r for r in record["rows"] if r["mode"] == "default+cuda-graphs"]
    assert [r["status"] for r in graphs] == ["n/a (needs CUDA)"]


def test_gpu_throughput_says_when_there_is_no_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    result = run_script("gpu_throughput.py", "--device", "cuda", check=False)
    assert result.returncode == 2 and "no CUDA device is visible" in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_step_matches_the_eager_step(tmp_path):
    output = tmp_path / "graphs.json"
    run_script("gpu_throughput.py", "--quick", "--device", "cuda", "--modes", "default,default+cuda-graphs",
               "--json", str(output))
    rows = json.loads(output.read_text())["rows"]
    graphed = [r for r in rows if r["mode"] == "default+cuda-graphs"]
    assert graphed and all(r["status"] == "ok" and r["graph_check_ok"] for r in graphed), graphed
    assert all(r["host_syncs_per_step"] == 0 for r in graphed if r["input"] == "synthetic")


def test_leaderboard_build_times_full_and_incremental_builds_of_the_same_bundles(tmp_path):
    output = tmp_path / "build.json"
    result = run_script("leaderboard_build.py", "--counts", "3", "--images", "20", "--classes", "3",
                        "--json", str(output))
    record = json.loads(output.read_text())
    (row,) = record["rows"]
    assert record["benchmark"] == "leaderboard_build" and row["bundles"] == 4
    assert row["full_s"] > 0 and row["incremental_one_new_s"] > 0
    assert row["ratio_full_to_incremental"] == row["full_s"] / row["incremental_one_new_s"]
    assert "full / incremental" in result.stdout


def test_plugin_checks_times_the_old_and_new_checks_in_one_process(tmp_path):
    output = tmp_path / "checks.json"
    result = run_script("plugin_checks.py", "--models", "smallcnn", "--rounds", "1", "--json", str(output))
    record = json.loads(output.read_text())
    assert record["benchmark"] == "plugin_checks" and record["settings"] == {"models": "smallcnn", "size": 32, "rounds": 1}
    timing = record["models"]["smallcnn"]
    assert timing["old_s"] > 0 and timing["new_over_old"] == pytest.approx(timing["new_s"] / timing["old_s"], rel=0.02)
    assert record["no_network_ms"] > 0 and record["imported_modules_ms"] > 0
    assert "new/old" in result.stdout and "no_network block" in result.stdout


def test_train_throughput_compares_the_harness_with_a_plain_loop_on_the_same_data(tiny_root, tmp_path):
    output = tmp_path / "train.json"
    result = run_script("train_throughput.py", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root",
                        str(tiny_root), "--model", "tiny-cnn", "--size", "32", "--rounds", "2", "--json", str(output))
    record = json.loads(output.read_text())
    assert record["benchmark"] == "train_throughput" and "train_throughput.py" in record["command"]
    assert record["settings"] == {"dataset": "tiny", "model": "tiny-cnn", "augmentation": "flip", "size": 32,
                                  "batch_size": 32, "rounds": 2, "train_images": 96}
    assert record["machine"]["torch_threads"] == torch.get_num_threads()
    assert record["machine"]["omp_wait_policy"] == "PASSIVE"
    assert len(record["rounds"]) == 2
    for row in record["rounds"]:
        assert row["harness_images_per_s"] > 0 and row["plain_images_per_s"] > 0
        assert row["ratio"] == row["harness_images_per_s"] / row["plain_images_per_s"]
    median = record["median"]
    assert median["ratio"] == pytest.approx(sum(row["ratio"] for row in record["rounds"]) / 2)
    assert record["input_pass"]["speedup"] > 0 and record["input_pass"]["fused_images_per_s"] > 0
    assert "harness / plain" in result.stdout
