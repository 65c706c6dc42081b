"""Plugin code runs offline: during its import and ``build`` torch's hub folder is an empty
temporary one and every way to the network (torch.hub downloads, name look-ups, Internet
sockets) raises one line naming ``harness.weights``; afterwards everything is as before."""

from __future__ import annotations

import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch.hub
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness import weights
from harness.cli import main
from harness.errors import UserError, cut
from harness.registry import Registry

PLUGIN = '''
import os
import urllib.request

import torch.hub

from harness import ModelSpec, hookimpl
from harness.weights import resolve
from tiny_plugin import build_tiny_plain

ATTEMPT = {attempt!r}
if ATTEMPT == "import":
    urllib.request.urlopen("http://127.0.0.1:{port}/weights.pth")


def build(num_classes, pretrained):
    seen = os.listdir(torch.hub.get_dir()) if os.path.isdir(torch.hub.get_dir()) else []
    assert seen == [], seen  # nothing cached is visible to plugin code
    assert resolve("cached.pth").read_bytes() == b"weights"  # the real cache, through harness.weights
    if ATTEMPT == "hub":
        torch.hub.load_state_dict_from_url("http://127.0.0.1:{port}/weights.pth")
    if ATTEMPT == "socket":
        socket = __import__("socket").socket()
        socket.connect(("127.0.0.1", {port}))
    if ATTEMPT == "urllib":
        urllib.request.urlopen("http://localhost:{port}/weights.pth")
    return build_tiny_plain(num_classes, False)


@hookimpl
def register_models(register):
    register(ModelSpec(name="online-{attempt}", build=build, version="1", head_prefixes=("head",)))
'''


class Weights(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"weights")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A weights server on 127.0.0.1: what the plugin would reach if it were let through."""
    httpd = HTTPServer(("127.0.0.1", 0), Weights)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch-home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / "cached.pth").write_bytes(b"weights")
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def plugin(tmp_path, attempt: str, port: int) -> str:
    path = tmp_path / f"online_{attempt}.py"
    path.write_text(PLUGIN.format(attempt=attempt, port=port))
    return str(path)


def refusal(what: str, torch_home) -> str:
    return (f"plugin code tried the network ({what}) during plugin import or build; harness.weights loads weights "
            f"from local files only: put the file in {torch_home / 'hub' / 'checkpoints'} and load it with "
            "harness.weights.load_state_dict, or pass --pretrained PATH")


@pytest.mark.parametrize("attempt, what", [
    ("hub", "load_state_dict_from_url http://127.0.0.1:{port}/weights.pth"),
    ("socket", "connection to ('127.0.0.1', {port})"),
    ("urllib", "name look-up of localhost"),
])
def test_a_build_that_tries_the_network_gets_one_line_naming_harness_weights(tmp_path, tiny_root, server, torch_home,
                                                                             attempt, what):
    result = CliRunner().invoke(main, [
        "run", "--plugin", TINY_PLUGIN, "--plugin", plugin(tmp_path, attempt, server), "--dataset", "tiny",
        "--data-root", str(tiny_root), "--model", f"online-{attempt}", "--protocol", "smoke", "--size", "32",
        "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "runs"), "--quiet"])
    message = cut(refusal(what.format(port=server), torch_home))
    assert result.exit_code != 0 and result.output == f"Error: {message}\n", result.output
    assert not list((tmp_path / "runs").rglob("result.json"))
    # Outside plugin code the network and torch's hub folder are as they were.
    assert torch.hub.get_dir() == str(torch_home / "hub") and os.environ["TORCH_HOME"] == str(torch_home)
    with socket.create_connection(("127.0.0.1", server)) as connection:
        connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert connection.recv(1024).startswith(b"HTTP/1.0 200")


def test_a_plugin_that_downloads_at_import_fails_to_load_with_the_line(tmp_path, server, torch_home):
    path = plugin(tmp_path, "import", server)
    (found,) = [p for p in Registry((path,)).plugins if p.name == path]
    assert found.error == f"UserError: {cut(refusal('name look-up of 127.0.0.1', torch_home), len(found.error) - 11)}"


def test_an_honest_build_through_harness_weights_still_trains(tmp_path, tiny_root, server, torch_home):
    result = CliRunner().invoke(main, [
        "run", "--plugin", TINY_PLUGIN, "--plugin", plugin(tmp_path, "none", server), "--dataset", "tiny",
        "--data-root", str(tiny_root), "--model", "online-none", "--protocol", "smoke", "--size", "32",
        "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "runs"), "--quiet"])
    assert result.exit_code == 0, result.output


def test_no_network_blocks_nest_and_leave_local_sockets_alone(tmp_path, torch_home):
    with weights.no_network():
        with weights.no_network():
            assert weights.hub_checkpoint_dir() == torch_home / "hub" / "checkpoints"
            assert torch.hub.get_dir() != str(torch_home / "hub")
        with pytest.raises(UserError, match="download_url_to_file http://x"):
            torch.hub.download_url_to_file("http://x", str(tmp_path / "x"))
        left, right = socket.socketpair(socket.AF_UNIX)
        left.sendall(b"ok")
        assert right.recv(2) == b"ok"
        left.close()
        right.close()
    assert torch.hub.get_dir() == str(torch_home / "hub")
