"""The UI's Host check (DNS rebinding): bound to loopback, the server answers only requests addressed to
``localhost``, a literal loopback address (v4 or v6, optional port) or a name passed with ``--allow-host``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.uihelp import get, served

REFUSED = (
    "127.evil.com",
    "127.0.0.1.nip.io",
    "127.0.0.1.nip.io:{port}",
    "127.0.0.1.evil.com:{port}",
    "localhost.evil.com",
    "localhost.",
    "evil.com:{port}",
    "2130706433",  # 127.0.0.1 as a number: a name to the server, never a literal address
    "[::1].evil.com",
    "[127.0.0.1]",
    "127.0.0.1:{port}x",
    "",
)
ACCEPTED = (
    "localhost",
    "localhost:{port}",
    "LOCALHOST:{port}",
    "127.0.0.1",
    "127.0.0.1:{port}",
    "127.5.6.7:{port}",
    "[::1]",
    "[::1]:{port}",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served(tmp_path_factory.mktemp("hostcheck"), allow_hosts=("box.example",)) as s:
        yield s


@pytest.mark.parametrize("host", REFUSED)
def test_names_that_only_look_like_loopback_are_refused(server, host):
    """A Host header naming anything but localhost or a literal loopback IP is answered 403, even when it
    begins with ``127.`` (``127.evil.com``, ``127.0.0.1.nip.io``): those are DNS names an attacker controls."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("GET", "/api/projects", skip_host=True)
    if host:
        conn.putheader("Host", host.format(port=server.port))
    conn.putheader("Authorization", f"token {server.token}")
    conn.endheaders()
    res = conn.getresponse()
    body = res.read().decode()
    conn.close()
    assert res.status == 403, (host, body)
    assert "loopback" in body and "box.example" in body


@pytest.mark.parametrize("host", ACCEPTED)
def test_localhost_and_literal_loopback_addresses_are_served(server, host):
    """``localhost`` and literal loopback IPs, v4 anywhere in 127.0.0.0/8 and v6 in brackets, with or
    without a port, are served."""
    status, _ = get(server, "/api/projects", headers={"Host": host.format(port=server.port)})
    assert status == 503  # past the Host check: the store does not exist yet


def test_allow_host_names_are_served(server):
    """A name given with ``allow_hosts`` (``rankwise ui --allow-host``) is served, with or without port,
    in any case; another name still is not."""
    for host in ("box.example", f"box.example:{server.port}", "BOX.example"):
        assert get(server, "/api/projects", headers={"Host": host})[0] == 503, host
    assert get(server, "/api/projects", headers={"Host": "box.example.evil.com"})[0] == 403


def test_allow_host_option_of_the_command(tmp_path):
    """``rankwise ui --allow-host NAME`` (repeatable) adds NAME to the accepted Host names."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rankwise._cli",
            "ui",
            "--store",
            str(tmp_path),
            "--port",
            "0",
            "--no-token",
            "--allow-host",
            "one.example",
            "--allow-host",
            "two.example",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]

        class Server:
            token = None

        server = Server()
        server.url = url
        assert get(server, "/api/projects", headers={"Host": "one.example"})[0] == 503
        assert get(server, "/api/projects", headers={"Host": "two.example:80"})[0] == 503
        assert get(server, "/api/projects", headers={"Host": "three.example"})[0] == 403
    finally:
        proc.terminate()
        proc.wait(timeout=20)
