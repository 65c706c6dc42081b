"""Run settings declared once: `bench run`'s options, `--config` files, `--from RUN_DIR`, the
Python API and `RunConfig.to_args` all read the same `RunConfig` fields."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness import RunConfig
from harness.cli import main
from harness.cli.run import run as run_command
from harness.config import option_flag
from harness.errors import UserError


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def run_json(run_dir) -> dict:
    stored = json.loads((run_dir / "run.json").read_text())
    stored.pop("out")
    return stored


def test_every_field_is_one_option_with_the_fields_help_and_default():
    options = {p.name: p for p in run_command.params}
    for spec in dataclasses.fields(RunConfig):
        option = options[spec.name]
        assert option.help == spec.metadata["help"]
        assert option_flag(spec).split("/")[0] == option.opts[0]
        if spec.default not in (None, ()):
            assert option.default == spec.default, spec.name


def test_to_args_parses_back_to_the_same_config():
    config = RunConfig(dataset="voc2007", data_root="/d", model="resnet101", augmentation="crop", size=448,
                       epochs=3, batch_size=8, seed=2, precision="bf16", cache=False, overwrite=True,
                       plugins=("a.py", "b"), skip_missing=True, run_id="x")
    context = run_command.make_context("run", config.to_args())
    parsed = {name: value for name, value in context.params.items() if name in {f.name for f in
                                                                             dataclasses.fields(RunConfig)}}
    assert RunConfig(**parsed) == config
    assert RunConfig().to_args() == []
    assert RunConfig().to_args(always=("seed",)) == ["--seed", "0"]


def test_python_api_refuses_wrong_names_and_types_in_one_line():
    with pytest.raises(UserError, match=r"argument size 'big': expected a whole number"):
        RunConfig.from_options({"size": "big"})
    with pytest.raises(UserError, match=r"argument sise is not a run setting \(did you mean 'size'\?\)"):
        RunConfig.from_options({"sise": 3})
    with pytest.raises(UserError, match=r"precision 'fp16': use auto, fp32, bf16"):
        RunConfig.from_options({"precision": "fp16"})
    assert RunConfig.from_options({"batch-size": 4}).batch_size == 4


def test_config_file_top_level_or_run_table(tmp_path):
    (tmp_path / "a.toml").write_text('model = "resnet18"\n[run]\nepochs = 2\nbatch-size = 4\n')
    assert RunConfig.from_file(tmp_path / "a.toml") == RunConfig(model="resnet18", epochs=2, batch_size=4)
    (tmp_path / "b.toml").write_text('epochs = 2\n[run]\nepochs = 3\n')
    with pytest.raises(UserError, match=r"b.toml: 'epochs' is set both at the top level and in \[run\]"):
        RunConfig.from_file(tmp_path / "b.toml")
    (tmp_path / "c.toml").write_text('epochs = "two"\n')
    with pytest.raises(UserError, match=r"c.toml: 'epochs' 'two': expected a whole number"):
        RunConfig.from_file(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text('epochs = \n')
    result = CliRunner().invoke(main, ["run", "--config", str(tmp_path / "d.toml")])
    assert result.exit_code == 1 and result.output.startswith(f"Error: --config {tmp_path / 'd.toml'}: not valid TOML")


@pytest.mark.slow
def test_config_and_from_give_the_run_json_of_the_equivalent_options(tiny_root, tmp_path):
    options = ["--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root", str(tiny_root), "--model", "tiny-cnn",
               "--size", "32", "--epochs", "1", "--device", "cpu", "--quiet"]
    assert invoke(["run", *options, "--seed", "1", "--out", str(tmp_path / "a")]).exit_code == 0
    first = tmp_path / "a" / "tiny-tiny-cnn-flip-32-smoke-seed1"

    config = tmp_path / "tiny.toml"
    config.write_text(f'dataset = "tiny"\ndata-root = "{tiny_root}"\nmodel = "tiny-cnn"\nsize = 32\n'
                      f'epochs = 1\nseed = 1\ndevice = "cpu"\nplugins = ["{TINY_PLUGIN}"]\n')
    assert invoke(["run", "--config", str(config), "--quiet", "--out", str(tmp_path / "b")]).exit_code == 0
    assert run_json(tmp_path / "b" / first.name) == run_json(first)

    # the command line overrides the file
    result = invoke(["run", "--config", str(config), "--seed", "2", "--quiet", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0
    overridden = run_json(tmp_path / "c" / "tiny-tiny-cnn-flip-32-smoke-seed2")
    assert overridden["seed"] == 2

    # --from: the finished run's settings again, with a new seed; its plugin file must be named again
    refused = CliRunner().invoke(main, ["run", "--from", str(first), "--seed", "2"])
    assert refused.exit_code == 1 and "name it again with --plugin" in refused.output
    again = invoke(["run", "--from", str(first), "--plugin", TINY_PLUGIN, "--seed", "2", "--quiet",
                    "--out", str(tmp_path / "d")])
    assert again.exit_code == 0, again.output
    assert run_json(tmp_path / "d" / "tiny-tiny-cnn-flip-32-smoke-seed2") == overridden
