"""``bench sweep``: grid expansion, resumability, local execution and Slurm scripts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import runner, sweep
from harness.cli import main
from harness.results import RunRecord
from harness.files import write_json
from runs import fake_training

GRIDS = Path(__file__).resolve().parents[1] / "baselines"
FAKE_BENCH = [sys.executable, str(Path(__file__).with_name("runs.py"))]


def invoke(*args, **kwargs):
    return CliRunner().invoke(main, ["sweep", *map(str, args)], **kwargs)


def finish(out: Path, run_id: str) -> None:
    write_json(out / run_id / "result.json", {"run_id": run_id})


def test_table2_dry_run_lists_54_cells_and_skips_finished_ones(tmp_path):
    result = invoke(GRIDS / "wang2019" / "table2.toml", "--dry-run", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    commands = [line for line in result.output.splitlines() if line.startswith("bench run ")]
    assert len(commands) == 54 and len(set(commands)) == 54
    assert "54 to run, 0 finished" in result.output
    finish(tmp_path, "voc2007-resnet101-flip-384-wang2019-seed0")
    finish(tmp_path, "coco2014-vgg16-mixup-512-wang2019-seed0")
    result = invoke(GRIDS / "wang2019" / "table2.toml", "--dry-run", "--out", tmp_path)
    assert sum(line.startswith("bench run ") for line in result.output.splitlines()) == 52
    assert "skip voc2007-resnet101-flip-384-wang2019-seed0 (finished)" in result.output
    assert "52 to run, 2 finished" in result.output
    assert not list(tmp_path.glob("*/scores.npz"))


def test_cell_command_and_seeds_override(tmp_path):
    grid = sweep.load_grid(GRIDS / "wang2019" / "table2.toml", seeds=[0, 1, 2])
    assert len(grid.cells) == 162
    cell = grid.cells[0]
    args = sweep.run_args(cell, grid, tmp_path, {None: "/data"})
    assert args[:3] == ["run", "--dataset", "nuswide"] and ["--run-id", cell.run_id] == args[args.index("--run-id"):][:2]
    assert ["--data-root", "/data"] == args[args.index("--data-root"):][:2]
    (tmp_path / cell.run_id).mkdir()
    (tmp_path / cell.run_id / "run.json").write_text("{}")
    assert sweep.run_args(cell, grid, tmp_path, {})[:3] == ["run", "--resume", str(tmp_path / cell.run_id)]
    result = invoke(GRIDS / "smoke" / "shapes.toml", "--dry-run", "--seeds", "x")
    assert result.exit_code == 1 and "--seeds" in result.output


def test_smoke_grid_is_small_and_has_both_ensembles():
    grid = sweep.load_grid(GRIDS / "smoke" / "shapes.toml")
    assert {(c.augmentation, c.size) for c in grid.cells} == {("flip", 64), ("crop", 64), ("mixup", 64), ("mixup", 48), ("mixup", 96)}
    assert [e.name for e in grid.ensembles] == ["ScaleEn", "DistrEn"]
    assert all(c.protocol == "smoke" and c.dataset == "shapes" and c.model == "smallcnn" for c in grid.cells)


def test_bad_grid_is_refused_with_one_line(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('protocol = "smoke"\ndatasets = ["shapes"]\nmodels = ["resnet18"]\nsize = [64]\n')
    result = invoke(path, "--dry-run")
    assert result.exit_code == 1 and "unknown key(s) size" in result.output and str(path) in result.output
    result = invoke(tmp_path / "missing.toml", "--dry-run")
    assert result.exit_code == 1 and "no such grid file" in result.output


def test_slurm_writes_a_job_array_and_a_dependent_ensembles_job(tmp_path):
    out = tmp_path / "runs"
    finish(out, "voc2007-resnet101-flip-384-wang2019-seed0")
    result = invoke(GRIDS / "wang2019" / "table3.toml", "--launcher", "slurm", "--out", out,
                    "--data-root", "voc2007=/data/voc", "--sbatch-option=--gres=gpu:1")
    assert result.exit_code == 0, result.output
    folder = out / "_sweep" / "slurm"
    assert (out / "_sweep" / "logs").is_dir()
    cells = (folder / "wang2019-table3-cells.sbatch").read_text()
    assert "#SBATCH --array=0-23" in cells and "#SBATCH --gres=gpu:1" in cells
    assert cells.count("start=(bench run --dataset ") == 24 and cells.count("resume=(bench run --resume ") == 24
    assert "  23) run_dir=" in cells and "#SBATCH --requeue" in cells and "#SBATCH --signal=B:USR1@180" in cells
    assert "trap 'requeue SIGTERM' TERM" in cells and 'scontrol requeue "$SLURM_JOB_ID"' in cells
    assert "--data-root /data/voc" in cells and "voc2007-resnet101-flip-384-wang2019-seed0 " not in cells
    ensembles = (folder / "wang2019-table3-ensembles.sbatch").read_text()
    assert ensembles.count("bench fuse ") == 12 and ensembles.count("|| status=1") == 12
    assert "--name ScaleEn --run-id voc2007-resnet101-flip-384+448+512-wang2019-seed0-ScaleEn" in ensembles
    submit = (folder / "submit.sh").read_text()
    assert 'cells=$(sbatch --parsable "$here/wang2019-table3-cells.sbatch")' in submit
    assert '--dependency="afterany:${cells%%;*}" "$here/wang2019-table3-ensembles.sbatch"' in submit


def test_gpus_per_cell_trains_each_slurm_task_under_torchrun(tmp_path):
    result = invoke(GRIDS / "wang2019" / "table2.toml", "--launcher", "slurm", "--gpus-per-cell", "4", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output.count("start=(torchrun --standalone --nproc-per-node=4 -m harness run --dataset ") == 54
    assert result.output.count("resume=(torchrun --standalone --nproc-per-node=4 -m harness run --resume ") == 54
    local = invoke(GRIDS / "wang2019" / "table2.toml", "--gpus-per-cell", "4", "--dry-run")
    assert local.exit_code == 1 and "--gpus-per-cell applies to --launcher slurm or submitit" in local.output


def write_grid(tmp_path: Path, models: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(
        f'protocol = "wang2019"\ndatasets = ["toy"]\nmodels = {models}\naugmentations = ["crop", "mixup"]\nsizes = [512]\n'
        '[[ensembles]]\nname = "DistrEn"\naugmentations = ["crop", "mixup"]\nsizes = [512]\n'
    )
    return path


def test_local_sweep_runs_cells_then_ensembles_reports_failures_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run", fake_training)
    grid, out = write_grid(tmp_path, '["resnet101", "broken"]'), tmp_path / "runs"
    result = invoke(grid, "--out", out)
    assert result.exit_code == 1
    assert "done    toy-resnet101-crop-512-wang2019-seed0" in result.output
    assert "failed  toy-broken-crop-512-wang2019-seed0  model 'broken' exploded (log: " in result.output
    assert "failed  toy-broken-crop+mixup-512-wang2019-seed0-DistrEn  member toy-broken-crop-512-wang2019-seed0 is not finished" in result.output
    assert "4 cells: 2 done, 0 skipped, 2 failed; 2 ensembles: 1 done, 0 skipped, 1 failed" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: 3 failed; logs in ")
    fused = RunRecord.read(out / "toy-resnet101-crop+mixup-512-wang2019-seed0-DistrEn")
    assert fused.kind == "fusion" and fused.fusion.label == "DistrEn"
    assert (out / "_sweep" / "logs" / "toy-broken-crop-512-wang2019-seed0.log").is_file()
    again = invoke(grid, "--out", out)
    assert "4 cells: 0 done, 2 skipped, 2 failed; 2 ensembles: 0 done, 1 skipped, 1 failed" in again.output


def test_per_gpu_pins_each_process_to_a_visible_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep.local, "bench_command", lambda: FAKE_BENCH)
    path = tmp_path / "grid.toml"
    path.write_text('protocol = "wang2019"\ndatasets = ["toy"]\nmodels = ["a", "b"]\naugmentations = ["flip", "crop"]\nsizes = [64]\n')
    grid = sweep.load_grid(path)
    lines: list[str] = []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sweep.LocalSweep(grid, tmp_path / "runs", {}, per_gpu=2, echo=lines.append).slots == []
    assert lines == ["no GPU visible: running one cell at a time"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    runner = sweep.LocalSweep(grid, tmp_path / "runs", {}, per_gpu=2, echo=lines.append)
    assert runner.slots == ["0", "0", "1", "1"]
    assert runner.run().failed == 0
    assert {RunRecord.read(tmp_path / "runs" / c.run_id).gpu for c in grid.cells} == {"0", "1"}
    assert sum(" on GPU " in line for line in lines) == 4


def test_a_data_root_for_a_dataset_the_grid_lacks_is_refused(tmp_path):
    from harness.errors import UserError
    from harness.sweep import parse_data_roots

    assert parse_data_roots(("voc2007=/data/voc",), {"voc2007"}) == {"voc2007": "/data/voc"}
    with pytest.raises(UserError, match=r"--data-root vco2007=/x: the grid has no dataset 'vco2007' \(it has voc2007\)"):
        parse_data_roots(("vco2007=/x",), {"voc2007"})


def test_plugins_reach_every_run_and_fusion(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text("")
    result = CliRunner().invoke(main, ["sweep", str(GRIDS / "smoke" / "shapes.toml"), "--out", str(tmp_path / "runs"),
                                       "--dry-run", "--plugin", str(plugin)])
    assert result.exit_code == 0, result.output
    commands = [line for line in result.output.splitlines() if line.startswith("bench ")]
    assert len(commands) == 7 and all(f"--plugin {plugin.resolve()}" in line for line in commands)
