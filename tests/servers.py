"""A local HTTP server on 127.0.0.1 for download tests: serves given bytes per path, honours
``Range`` requests, and can stop a response after some bytes to imitate a dropped connection."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class Files:
    """What the server serves: ``content[path] = bytes``; ``cut[path] = n`` sends only the
    first n bytes of the next full response once; ``headers[path]`` adds response headers;
    ``requests`` lists (method, path, Range header) as received."""

    def __init__(self):
        self.content: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str, str | None]] = []


def _handler(files: Files):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            files.requests.append((self.command, path, self.headers.get("Range")))
            data = files.content.get(path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            requested = self.headers.get("Range")
            if requested and requested.startswith("bytes=") and requested[6:].split("-")[0].isdigit():
                start = int(requested[6:].split("-")[0])
            part = data[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(part)))
            for key, value in files.headers.get(path, {}).items():
                self.send_header(key, value)
            self.end_headers()
            if not body:
                return
            limit = files.cut.pop(path, None) if not start else None
            self.wfile.write(part if limit is None else part[:limit])
            if limit is not None:
                self.wfile.flush()
                self.close_connection = True

        def do_GET(self):
            self._serve(True)

        def do_HEAD(self):
            self._serve(False)

    return Handler


@contextlib.contextmanager
def serving(files: Files) -> Iterator[str]:
    """Serve ``files`` on 127.0.0.1 in a thread; yields the base URL (``http://127.0.0.1:PORT``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
