"""``bench run --resume`` imports no code that the run folder names: planted and unnamed
plugins are one line and never run; tried on a real killed run with real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_PLUGIN
from test_run_safety import bench, killed_run, one_error_line

from harness.naming import code_sha256

pytestmark = pytest.mark.slow

PAYLOAD = "from pathlib import Path\nPath({marker!r}).write_text('ran')\n"


@pytest.fixture(scope="module")
def killed(tiny_root, tmp_path_factory) -> Path:
    return killed_run(tiny_root, tmp_path_factory.mktemp("runs"))


def plant(run_dir: Path, code: Path, kind: str = "file") -> dict:
    """``run.json`` with one more plugin entry naming ``code`` with its true sha256; returns the original."""
    original = json.loads((run_dir / "run.json").read_text())
    forged = json.loads(json.dumps(original))
    entry = json.loads(json.dumps(forged["plugins"][0]))
    entry["value"] = str(code)
    entry["plugin"].update(name=code.stem, source=kind, path=str(code), sha256=code_sha256(code) if kind != "module" else None)
    forged["plugins"].append(entry)
    (run_dir / "run.json").write_text(json.dumps(forged))
    return original


def test_resume_imports_a_plugin_file_only_when_it_is_named_again(killed):
    line = one_error_line(bench("run", "--resume", killed))
    assert line == (f"Error: {killed / 'run.json'}: plugins[0] is file {str(Path(TINY_PLUGIN).resolve())!r}; resume "
                    f"imports a plugin only when you name it again: add --plugin {Path(TINY_PLUGIN).resolve()}")
    line = one_error_line(bench("run", "--resume", killed, "--plugin", TINY_PLUGIN, "--plugin", "json"))
    assert line.startswith("Error: --plugin json: not a plugin of the run in ") and line.endswith(": drop it")


def test_a_planted_py_named_by_run_json_is_never_imported(killed, tmp_path):
    marker = tmp_path / "payload-ran"
    inside = killed / "evil.py"
    inside.write_text(PAYLOAD.format(marker=str(marker)))
    original = plant(killed, inside)
    try:
        for extra in ((), ("--plugin", inside)):  # even named again: a run folder's own files are never code
            line = one_error_line(bench("run", "--resume", killed, "--plugin", TINY_PLUGIN, *extra))
            assert line == (f"Error: {killed / 'run.json'}: plugins[1] is {str(inside)!r}, inside the run folder; resume "
                            "never imports code from a run folder: start the run again with the plugin kept elsewhere")
        outside = tmp_path / "elsewhere.py"
        outside.write_text(PAYLOAD.format(marker=str(marker)))
        (killed / "run.json").write_text(json.dumps(original))
        plant(killed, outside)
        line = one_error_line(bench("run", "--resume", killed, "--plugin", TINY_PLUGIN))
        assert line == (f"Error: {killed / 'run.json'}: plugins[1] is file {str(outside)!r}; resume imports a plugin "
                        f"only when you name it again: add --plugin {outside}")
        (killed / "run.json").write_text(json.dumps(original))
        plant(killed, Path("evil_module"), kind="module")
        line = one_error_line(bench("run", "--resume", killed, "--plugin", TINY_PLUGIN))
        assert line.endswith("plugins[1] is module 'evil_module'; resume imports a plugin only when you name it again: "
                             "add --plugin evil_module")
    finally:
        (killed / "run.json").write_text(json.dumps(original))
    assert not marker.exists() and not (killed / "result.json").exists()
