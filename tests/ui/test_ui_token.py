"""The UI's token (like Jupyter's): generated at start, carried by the printed address; a request with it
gets a per-port cookie; every request without it (API, page, static, media) is answered 403."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

import rankwise
from support.uihelp import served, watch_errors


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    return path


def raw(server, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, {k.lower(): v for k, v in res.getheaders()}, body


def test_requests_without_the_token_are_refused(server):
    """API calls, pages, static files and media without the token (or with a wrong one, or another port's
    cookie) get 403 and a message that says where the token is."""
    wrong = "x" * len(server.token)
    for path in ("/api/projects", "/", "/g/p/g", "/static/app.js", "/media/ab/cd.png", f"/api/projects?token={wrong}"):
        for headers in (
            {},
            {"Authorization": f"token {wrong}"},
            {"Cookie": f"rankwise-token-1={server.token}"},
            {"Cookie": f"{server.cookie_name}={wrong}"},
        ):
            status, _, body = raw(server, path, headers)
            assert status == 403 and b"token" in body, (path, headers)


def test_the_token_opens_every_request(server):
    """The token as ``Authorization: token T``, ``Bearer T``, ``?token=T`` on an API call, or the cookie."""
    for headers in (
        {"Authorization": f"token {server.token}"},
        {"Authorization": f"Bearer {server.token}"},
        {"Cookie": f"other=1; {server.cookie_name}={server.token}"},
    ):
        assert raw(server, "/static/app.js", headers)[0] == 200, headers
        assert raw(server, "/api/projects", headers)[0] == 503, headers  # past the check: no store yet
    assert raw(server, f"/api/projects?token={server.token}")[0] == 503


def test_page_with_the_token_sets_the_cookie_and_redirects_without_it(server):
    """The printed address (``/?token=T``) and a page address with the token answer 303 to the same page
    without the token (other parameters kept) and set an HttpOnly cookie named after the port."""
    assert server.login_url == f"{server.url}?token={server.token}"
    status, headers, _ = raw(server, "/" + server.login_url.split("/", 3)[3])
    assert status == 303 and headers["location"] == "/"
    assert headers["set-cookie"] == f"{server.cookie_name}={server.token}; Path=/; HttpOnly; SameSite=Lax"
    status, headers, _ = raw(server, f"/g/my%20p/g1?x=1&token={server.token}")
    assert status == 303 and headers["location"] == "/g/my%20p/g1?x=1"
    status, headers, _ = raw(server, f"//evil.example/x?token={server.token}")
    assert status == 303 and headers["location"] == "/evil.example/x"  # same server, never another host
    cookie = headers["set-cookie"].split(";")[0]
    assert raw(server, "/g/my%20p/g1", {"Cookie": cookie})[0] == 200


def test_no_token_serves_everyone(store):
    """A server made with ``token=None`` (``rankwise ui --no-token``) needs no token."""
    with served(store, token=None) as s:
        assert s.login_url == s.url
        assert raw(s, "/static/app.js")[0] == 200 and raw(s, "/api/projects")[0] == 503


def test_ui_command_prints_a_fresh_token_and_no_token_opts_out(store):
    """``rankwise ui`` prints its address with a new token each start; ``--no-token`` prints the bare
    address and warns on stderr that every local user can read the store."""
    tokens = []
    for extra in ([], [], ["--no-token"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "rankwise._cli", "ui", "--store", str(store), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        try:
            url = proc.stdout.readline().split(" at ")[1].split()[0]
            parts = urlsplit(url)
            tokens.append(parts.query.removeprefix("token="))
            conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10)
            conn.request("GET", "/api/projects")
            res = conn.getresponse()
            res.read()
            conn.close()
            assert res.status == (503 if extra else 403)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
        if extra:
            assert "--no-token: every user of this machine can read the store" in err
    assert len(tokens[0]) == len(tokens[1]) == 32 and tokens[0] != tokens[1] and tokens[2] == ""


def test_browser_opens_the_printed_address_then_every_page_works(browser, rankwise_env):
    """In a browser, a group page without the token is refused; after the printed address, the cookie
    lets the app's pages, API calls and live event stream through, and the address bar shows no token."""
    run = rankwise.init(project="tok", group="job-tok", rank=0, world_size=1)
    for s in range(5):
        run.log({"loss": float(s)})
    run.finish()
    with served(rankwise_env.data) as server:
        page = browser.new_page()
        errors = watch_errors(page)
        refused: list[str] = []
        page.on("response", lambda r: refused.append(r.url) if r.status == 403 else None)
        res = page.goto(f"{server.url}g/tok/job-tok")
        assert res.status == 403 and "token" in page.content()
        page.goto(server.login_url)
        assert page.url == server.url
        page.wait_for_selector("#projects a:text('tok')")
        page.goto(f"{server.url}g/tok/job-tok")
        page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
        points = page.evaluate("() => window.rw.charts.get('loss').u.data[0].length")
        assert points == 5
        # only what was loaded before the token was refused (the page, perhaps its favicon): nothing the app
        # asked for afterwards
        assert set(refused) <= {f"{server.url}g/tok/job-tok", f"{server.url}favicon.ico"}, refused
        assert [e for e in errors if "status of 403" not in e] == []
        page.close()
