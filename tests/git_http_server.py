"""A small smart-HTTP git server for tests: ``git http-backend`` behind HTTP basic auth.

It serves every bare repository under ``root`` on 127.0.0.1 (a free port) and answers
401 to any request that does not carry ``token`` as its basic-auth password (any user
name), the way GitHub answers a private repository::

    with GitHTTPServer(root=tmp_path, token="s3cret") as server:
        url = server.url("app.git")          # http://127.0.0.1:PORT/app.git
        ...                                  # git clone with the token as password
        assert server.authorized > 0         # the token really was sent

Pushes go to the bare repositories directly (by path); this server is read-only.
"""

from __future__ import annotations

import base64
import binascii
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _password(self) -> str | None:
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, code: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        body = self._body() if self.command == "POST" else b""
        password = self._password()
        with self.server.lock:
            self.server.requests += 1
            if password is None:
                self.server.unauthenticated += 1
            elif password == self.server.token:
                self.server.authorized += 1
            else:
                self.server.rejected += 1
        if password != self.server.token:
            self._reply(401, {"WWW-Authenticate": 'Basic realm="git"'}, b"authentication required\n")
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": "tester",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        code, headers = 200, {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                code = int(value.strip().split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        self._reply(code, headers, payload)

    do_GET = _serve  # noqa: N815 - stdlib naming
    do_POST = _serve  # noqa: N815 - stdlib naming


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    token: str
    lock: threading.Lock
    requests: int
    authorized: int
    rejected: int
    unauthenticated: int


class GitHTTPServer:
    """Serves the bare repositories under ``root`` over smart HTTP, requiring ``token``."""

    def __init__(self, root: Path, token: str):
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.root = root
        self._server.token = token
        self._server.lock = threading.Lock()
        self._server.requests = self._server.authorized = 0
        self._server.rejected = self._server.unauthenticated = 0
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    @property
    def authorized(self) -> int:
        """Requests that carried the right token."""
        return self._server.authorized

    @property
    def rejected(self) -> int:
        """Requests that carried a wrong password."""
        return self._server.rejected

    def start(self) -> GitHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> GitHTTPServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
