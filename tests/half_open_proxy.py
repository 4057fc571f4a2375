"""A TCP proxy in front of redis-server that can stop forwarding without closing anything (half-open).

This is what a managed Redis behind a load balancer can do: connections stay open, nothing
answers. Connections that were open while the proxy was frozen stay dead for good (as a
load balancer's lost flows do); connections made after ``resume()`` are forwarded again::

    proxy = HalfOpenProxy(redis_server.port).start()
    stack = stack_factory(remote, REDIS_URL=proxy.url)
    proxy.freeze()      # every connection open now never answers again
    proxy.resume()      # new connections work
    proxy.stop()
"""

from __future__ import annotations

import contextlib
import socket
import threading

from bench.stack import free_port


class _Flow:
    """One client connection and its upstream; ``dead`` flows swallow what they read."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.dead = upstream is None

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


class HalfOpenProxy:
    """Forwards a free loopback port to ``127.0.0.1:target_port`` until frozen."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.frozen = False
        self.flows: list[_Flow] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> HalfOpenProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()
        return self

    def freeze(self) -> None:
        """Stop forwarding on every connection, open now or made until ``resume``; close none."""
        with self._lock:
            self.frozen = True
            for flow in self.flows:
                flow.dead = True

    def resume(self) -> None:
        """Forward new connections again (the frozen ones stay dead)."""
        with self._lock:
            self.frozen = False

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            for flow in self.flows:
                flow.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                frozen = self.frozen
            upstream = None
            if not frozen:
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                    upstream.settimeout(None)
                except OSError:
                    client.close()
                    continue
            flow = _Flow(client, upstream)
            with self._lock:
                self.flows.append(flow)
            threading.Thread(target=self._pump, args=(flow, client, upstream), daemon=True).start()
            if upstream is not None:
                threading.Thread(target=self._pump, args=(flow, upstream, client), daemon=True).start()

    def _pump(self, flow: _Flow, source: socket.socket, target: socket.socket | None) -> None:
        try:
            while data := source.recv(65536):
                if not flow.dead and target is not None:
                    target.sendall(data)
        except OSError:
            pass
        # The sender closed: close the flow, unless it is dead (a dead peer closes nothing).
        if not flow.dead:
            flow.close()
        elif source is flow.client:
            flow.close()  # the client gave up on the dead connection: let it go
