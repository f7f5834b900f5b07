"""The UI server's connections are bounded: at most ``max_connections`` served at once (more are answered
503 and closed, not given a thread each) and a silent connection is closed after ``idle_timeout_s``."""

from __future__ import annotations

import socket

from support.probes import wait_for
from support.uihelp import get, served


def test_connections_beyond_the_limit_get_503_and_no_slot(tmp_path):
    """With 4 silent connections holding every slot, 20 more are answered 503 at once and take no slot (no
    thread); when a silent one closes, its slot serves the next request."""
    with served(tmp_path, max_connections=4, idle_timeout_s=60) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(4)]
        wait_for(lambda: server.active == 4, 10, "4 connections in their slots")
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            assert data.startswith(b"HTTP/1.1 503 ") and data.endswith(b"too many connections to rankwise ui\n")
        assert server.refused_busy == 20 and server.active == 4
        idle.pop().close()
        wait_for(lambda: server.active == 3, 10, "the closed connection's slot back")
        assert get(server, "/api/projects")[0] == 503  # served (no store yet)
        for s in idle:
            s.close()
        wait_for(lambda: server.active == 0, 10, "every slot back")


def test_a_silent_connection_is_closed_after_the_idle_timeout(tmp_path):
    """A client that connects and sends nothing (or half a request) is disconnected after the idle timeout
    and its slot is free again."""
    with served(tmp_path, max_connections=2, idle_timeout_s=0.5) as server:
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        half = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        half.sendall(b"GET /static/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: never complete
        assert silent.recv(10) == b""  # the server closed it
        data = b""
        while chunk := half.recv(4096):
            data += chunk
        assert data == b""
        wait_for(lambda: server.active == 0, 10, "both slots back")
        silent.close()
        half.close()


def test_ctrl_c_while_a_connection_thread_starts_stops_the_server(tmp_path, monkeypatch):
    """Ctrl-C can land while the main thread waits in Thread.start() for a connection's thread: the
    KeyboardInterrupt reaches serve_forever's caller (rankwise ui exits) instead of being replaced by a
    "semaphore released too many times" error that the server swallowed, and the slot is released
    exactly once, by the connection's thread."""
    import threading

    from rankwise._ui.server import make_server

    server = make_server(tmp_path / "none", port=0, max_connections=2)
    real_start = threading.Thread.start

    def start_then_interrupt(self):
        real_start(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        client.sendall(b"GET /api/projects HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        try:
            server.handle_request()
        except KeyboardInterrupt:
            interrupted = True
        else:
            interrupted = False
        monkeypatch.undo()
        assert interrupted
        # (socketserver shuts the connection down on the way out: the server is stopping)
        wait_for(lambda: server.active == 0, 10, "the slot back, released once")
        assert server.slots._value == 2
    finally:
        client.close()
        server.server_close()
