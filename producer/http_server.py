"""The poller's small HTTP server: the guide's health endpoint (and, later, status and webhook).

It starts before anything slow (clone, Redis, the boot PRE_DEPLOY) so ``GET /dev_health``
answers 200 from the first second of boot::

    server = HotreloadHTTPServer(port=9090, state=lambda: {"state": "cloning"})
    server.start()          # serves in a daemon thread
    ...
    server.stop()
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # health probes every few seconds would drown the deploy log

    def _send_json(self, code: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        if path == "/dev_health":
            self._send_json(200, {"status": "ok", **self.server.state()})
        else:
            self._send_json(404, {"error": "not found"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: Callable[[], dict[str, Any]]


class HotreloadHTTPServer:
    """Serves the health endpoint in a background thread."""

    def __init__(self, port: int, state: Callable[[], dict[str, Any]], host: str = "0.0.0.0"):
        self._server = _Server((host, port), _Handler)
        self._server.state = state
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
