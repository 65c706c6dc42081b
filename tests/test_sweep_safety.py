"""Grid values never reach a shell or a path unquoted: bad values are one line naming the key,
the generated Slurm scripts pass every value to ``bench`` literally (run by bash with a
recording ``bench`` on PATH), and scripts are written only inside ``--out``, never through a link."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main

RECORDING_BENCH = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["BENCH_ARGS"], "a") as stream:
    stream.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def sweep(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)])


def grid(tmp_path: Path, body: str, name: str = "grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


BASE = 'protocol = "smoke"\ndatasets = ["shapes"]\nmodels = ["smallcnn"]\naugmentations = ["flip"]\nsizes = [64]\n'


@pytest.mark.parametrize("line, key, value", [
    ('name = "evil\\nrm -rf ~"', "name", "evil\nrm -rf ~"),
    ('name = "../../escape"', "name", "../../escape"),
    ('models = ["smallcnn", "$(touch pwned)"]', "models[1]", "$(touch pwned)"),
    ('datasets = ["`id`"]', "datasets[0]", "`id`"),
    ('[run]\npretrained = "../../../weights.pth"', "run.pretrained", "../../../weights.pth"),
    ('[[ensembles]]\nname = "x\\ny"\naugmentations = ["flip", "crop"]\nsizes = [64]', "ensembles[0].name", "x\ny"),
])
def test_a_grid_value_that_could_reach_a_shell_or_climb_a_folder_is_one_line_naming_its_key(tmp_path, line, key, value):
    lines = [entry for entry in BASE.splitlines() if entry.split(" =")[0] not in line.split(" =")[0]]
    path = grid(tmp_path, "\n".join(lines) + "\n" + line + "\n")
    for launcher in ("local", "slurm"):
        result = sweep(path, "--dry-run", "--launcher", launcher, "--out", tmp_path / "out")
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert result.output.startswith(f"Error: {path}: {key} is {value!r}; grid values hold no newline"), result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "pwned").exists()


def test_a_grid_name_that_is_not_a_plain_name_is_refused(tmp_path):
    path = grid(tmp_path, 'name = "a/b"\n' + BASE)
    result = sweep(path, "--dry-run", "--launcher", "slurm")
    assert result.exit_code == 1 and result.output == (
        f"Error: {path}: name 'a/b' is not a plain name: use letters, digits and . _ + = @ , - (no / or \\, not "
        "starting with a dot, at most 200 characters)\n")


def test_sbatch_options_and_out_on_more_than_one_line_are_refused(tmp_path):
    path = grid(tmp_path, BASE)
    result = sweep(path, "--launcher", "slurm", "--out", tmp_path / "out", "--sbatch-option", "--gres=gpu:1\necho hi")
    assert result.exit_code == 1 and result.output.startswith("Error: --sbatch-option '--gres=gpu:1\\necho hi' holds a "
                                                              "newline")
    result = sweep(path, "--launcher", "slurm", "--out", tmp_path / "a\nb")
    assert result.exit_code == 1 and result.output.startswith("Error: --out ") and result.output.count("\n") == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "a\nb").exists()


def test_generated_scripts_hand_every_value_to_bench_literally(tmp_path):
    odd = "x; touch PWNED 'quoted' \"double\" *"
    path = grid(tmp_path, BASE.replace('models = ["smallcnn"]', f"models = [{json.dumps(odd)}]") +
                "[run]\nskip-missing = true\n")
    out = tmp_path / "my out"
    result = sweep(path, "--launcher", "slurm", "--out", out, "--data-root", tmp_path / "data; touch PWNED2")
    assert result.exit_code == 0, result.output
    script = out / "_sweep" / "slurm" / "grid-cells.sbatch"
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "bench").write_text(RECORDING_BENCH)
    (bin_folder / "bench").chmod(0o755)
    record = tmp_path / "args.jsonl"
    env = {**os.environ, "PATH": f"{bin_folder}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "0",
           "BENCH_ARGS": str(record)}
    subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, check=True)
    (args,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert args[args.index("--model") + 1] == odd
    assert args[args.index("--data-root") + 1] == str(tmp_path / "data; touch PWNED2")
    assert args[args.index("--out") + 1] == str(out)
    assert not list(tmp_path.rglob("PWNED*"))


def test_scripts_are_written_only_inside_out_and_never_through_a_link(tmp_path):
    path = grid(tmp_path, BASE)
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "_sweep").mkdir(parents=True)
    (out / "_sweep" / "slurm").symlink_to(elsewhere)
    result = sweep(path, "--launcher", "slurm", "--out", out)
    assert result.exit_code == 1 and result.output == (
        f"Error: {out / '_sweep' / 'slurm'}: a symbolic link; bench sweep writes its scripts only inside --out {out}: "
        "replace the link with a folder\n")
    assert list(elsewhere.iterdir()) == []
    (out / "_sweep" / "slurm").unlink()
    (out / "_sweep" / "slurm").mkdir()
    victim = elsewhere / "victim.sh"
    victim.write_text("someone's script\n")
    (out / "_sweep" / "slurm" / "submit.sh").symlink_to(victim)  # a link where a script goes is replaced, not followed
    assert sweep(path, "--launcher", "slurm", "--out", out).exit_code == 0
    assert victim.read_text() == "someone's script\n"
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["elsewhere/victim.sh", "grid.toml", "out/_sweep/slurm/grid-cells.sbatch",
                       "out/_sweep/slurm/submit.sh"]
    assert not (out / "_sweep" / "slurm" / "submit.sh").is_symlink()


@pytest.mark.parametrize("line, message", [
    ("ensembles = 3", "ensembles is 3; give a list of [[ensembles]] tables"),
    ("ensembles = [3]", "ensembles is [3]; give a list of [[ensembles]] tables"),
    ('ensembles = [{name = "E", augmentations = ["flip", "crop"], sizes = [64], exclude = [3]}]',
     'ensembles[0]: exclude is [3]; give a list of tables like {dataset = "voc2007", model = "vgg16"}'),
])
def test_odd_grid_structures_are_one_line_not_unexpected_errors(tmp_path, line, message):
    path = grid(tmp_path, BASE + line + "\n")
    result = sweep(path, "--dry-run")
    assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output
    assert "unexpected" not in result.output
