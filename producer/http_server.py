"""The poller's small HTTP server: health, status, metrics and the push webhooks.

It starts before anything slow (clone, Redis, the boot PRE_DEPLOY) so ``GET /dev_health``
answers 200 from the first second of boot; the other routes are attached once Redis is
known, and answer 503 until then::

    server = HotreloadHTTPServer(port=9090, state=lambda: {"state": "cloning"})
    server.start()          # serves in a daemon thread
    server.attach(status=lambda: deploy_status(redis, keys), metrics=Metrics(redis, keys),
                  webhooks={"github": PushWebhook(HOSTS["github"], secret, branch=..., wake=...)})
    ...
    server.stop()

Routes: ``GET /dev_health``, ``GET /status`` (``producer.status``), ``GET /metrics``
(``producer.metrics``), ``POST /webhook/<host>`` for github, gitlab, gitea and bitbucket
(``producer.webhook``; 404 unless a secret is configured, 413 over 1 MiB judged from
Content-Length before reading).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from producer.webhook import MAX_BODY

if TYPE_CHECKING:
    from producer.metrics import Metrics
    from producer.webhook import PushWebhook

#: Seconds a client may take to send its request: a slow sender cannot hold a thread for ever.
REQUEST_TIMEOUT = 10


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    server_version = "hotreload"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # health probes every few seconds would drown the deploy log

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, code: int, payload: dict[str, Any]) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        if path == "/dev_health":
            self._send_json(200, {"status": "ok", **self.server.state()})
        elif path == "/status":
            if self.server.status is None:
                self._send_json(503, {"error": "starting: Redis not reached yet"})
                return
            try:
                self._send_json(200, self.server.status())
            except Exception as exc:  # noqa: BLE001 - a Redis outage is an answer, not a crash
                self._send_json(503, {"error": f"status unavailable: {type(exc).__name__}"})
        elif path == "/metrics":
            if self.server.metrics is None:
                self._send_json(503, {"error": "starting"})
                return
            body, content_type = self.server.metrics.render()
            self._send(200, body, content_type)
        else:
            self._send_json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        webhook = (
            self.server.webhooks.get(path.removeprefix("/webhook/")) if path.startswith("/webhook/") else None
        )
        if webhook is None:
            self.close_connection = True  # the body, if any, is not read
            self._send_json(404, {"error": "not found"})
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            self._send_json(411, {"error": "Content-Length required"})
            return
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send_json(400, {"error": "invalid Content-Length"})
            return
        if length > MAX_BODY:
            self.close_connection = True
            self._send_json(413, {"error": f"body over {MAX_BODY} bytes"})
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return  # the client went away mid-body
        try:
            code, answer = webhook.handle(dict(self.headers.items()), body)
        except Exception as exc:  # noqa: BLE001 - e.g. Redis down: the host shows the failure and can redeliver
            code, answer = 503, {"error": f"could not queue the sync: {type(exc).__name__}"}
        self._send_json(code, answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: Callable[[], dict[str, Any]]
    status: Callable[[], dict[str, Any]] | None = None
    metrics: Metrics | None = None
    webhooks: Mapping[str, PushWebhook] = {}

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hangs up is not worth a traceback in the deploy log


class HotreloadHTTPServer:
    """Serves the health, status, metrics and webhook endpoints in a background thread."""

    def __init__(self, port: int, state: Callable[[], dict[str, Any]], host: str = "0.0.0.0"):
        self._server = _Server((host, port), _Handler)
        self._server.state = state
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def attach(
        self,
        state: Callable[[], dict[str, Any]] | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        metrics: Metrics | None = None,
        webhooks: Mapping[str, PushWebhook] | None = None,
    ) -> None:
        """Plug in what needs Redis or the poller once they exist."""
        if state is not None:
            self._server.state = state
        if status is not None:
            self._server.status = status
        if metrics is not None:
            self._server.metrics = metrics
        if webhooks is not None:
            self._server.webhooks = dict(webhooks)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
