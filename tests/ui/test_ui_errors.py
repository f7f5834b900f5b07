"""Errors and transfer in the web UI (issue 14, points 10 and 11): an unknown path is an HTML 404 page, an
/api miss stays a JSON 404; JSON and static text are gzipped when the request accepts it (same bytes once
decompressed, ``Vary: Accept-Encoding``), sent plain when it does not, and media are never recompressed;
in the browser ``/g/<project>`` goes on to the project page and an unknown group or page says what is
missing with a link. The group is written straight through the SQLite store classes
(tests/support/uihelp.py ``write_big_group``). Screenshots go to test-artifacts/."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json

import pytest

from agent.media import relative_path
from support.uihelp import artifact, auth, page_url, served, watch_errors, write_big_group

PROJECT, GROUP = "errs", "g3x600"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("errors") / "store.sqlite"
    write_big_group(path, PROJECT, GROUP, ranks=3, steps=600, chunk=300)  # 3 ranks: no spike (rank 3 has it)
    return path


def request(server, path: str, gzip_ok: bool = False, method: str = "GET") -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, raw body bytes as sent) of one request with the token."""
    headers = dict(auth(server))
    if gzip_ok:
        headers["Accept-Encoding"] = "gzip, deflate, br"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, headers=headers)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


SERIES = f"/api/projects/{PROJECT}/groups/{GROUP}/series?key=loss&width=2000&ranks=1"


@pytest.mark.parametrize("path", ["/nope", "/x/y/z/w", "/p", "/p/a/b", f"/g/{PROJECT}/{GROUP}/x/1", "/static/no.js"])
def test_unknown_paths_get_an_html_404_page_with_a_link_home(server, path):
    """Not an app route, not /api, not a static file: status 404, text/html, the app's style sheet, the path
    named (escaped) and a link to /."""
    status, headers, body = request(server, path)
    assert status == 404
    assert headers["content-type"] == "text/html; charset=utf-8"
    text = body.decode()
    assert '<a href="/">' in text and "/static/style.css" in text
    assert f"<code>{path}</code>" in text


def test_the_404_page_escapes_the_path(server):
    """Characters of markup in the path come back as entities, never as markup."""
    status, _, body = request(server, "/a\"b&c'd")
    assert status == 404
    assert b"<code>/a&quot;b&amp;c&#x27;d</code>" in body


@pytest.mark.parametrize(
    "path", ["/", f"/p/{PROJECT}", f"/g/{PROJECT}", f"/g/{PROJECT}/{GROUP}", f"/g/{PROJECT}/{GROUP}/rank/2", "/compare"]
)
def test_app_routes_serve_the_app(server, path):
    """Every route of the app (docs/ui.md "URLs") is the app's index.html, status 200."""
    status, headers, body = request(server, path)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script type="module" src="/static/app.js">' in body


def test_api_misses_stay_json(server):
    """/api paths keep JSON errors: an unknown endpoint and an unknown group are JSON 404s naming them."""
    for path, word in (("/api/nope", "nope"), (f"/api/projects/{PROJECT}/groups/nosuch", "nosuch")):
        status, headers, body = request(server, path, gzip_ok=True)
        assert status == 404 and headers["content-type"] == "application/json"
        assert word in json.loads(body)["error"]


def test_json_gzip_round_trip_gives_the_same_bytes(server):
    """The per-rank series gzipped (Accept-Encoding: gzip) decompresses to exactly the plain response's bytes,
    is smaller, and both carry Vary: Accept-Encoding; without the header nothing is compressed."""
    status, plain_headers, plain = request(server, SERIES)
    assert status == 200 and "content-encoding" not in plain_headers
    assert plain_headers["vary"] == "Accept-Encoding"
    assert int(plain_headers["content-length"]) == len(plain) > 1024
    status, gz_headers, gz = request(server, SERIES, gzip_ok=True)
    assert status == 200 and gz_headers["content-encoding"] == "gzip"
    assert gz_headers["vary"] == "Accept-Encoding"
    assert int(gz_headers["content-length"]) == len(gz) < len(plain) / 2
    assert gzip.decompress(gz) == plain
    assert json.loads(plain)["key"] == "loss"


def test_head_gives_the_length_get_would_send(server):
    """HEAD with gzip accepted: the same headers as the GET, no body."""
    _, get_headers, gz = request(server, SERIES, gzip_ok=True)
    status, head_headers, body = request(server, SERIES, gzip_ok=True, method="HEAD")
    assert status == 200 and body == b""
    assert head_headers["content-encoding"] == "gzip" and head_headers["content-length"] == str(len(gz))


def test_tiny_json_is_not_compressed(server):
    """A body under compress.MIN_BYTES goes plain even when gzip is accepted (still Vary)."""
    from rankwise._ui.compress import MIN_BYTES

    status, headers, body = request(server, "/api/projects", gzip_ok=True)
    assert status == 200 and len(body) < MIN_BYTES
    assert "content-encoding" not in headers and headers["vary"] == "Accept-Encoding"


def test_static_files_are_gzipped_once_and_cached(server):
    """app.js gzipped decompresses to the file's bytes; asking again compresses nothing more; without
    Accept-Encoding the file goes plain."""
    from rankwise._ui.handler import STATIC

    path = "/static/vendor/uPlot.iife.min.js"
    on_disk = (STATIC / "vendor" / "uPlot.iife.min.js").read_bytes()
    status, headers, gz = request(server, path, gzip_ok=True)
    assert status == 200 and headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(gz) == on_disk and len(gz) < len(on_disk) / 2
    done = server.static_cache.compressions
    _, _, again = request(server, path, gzip_ok=True)
    assert again == gz and server.static_cache.compressions == done
    status, headers, plain = request(server, path)
    assert "content-encoding" not in headers and plain == on_disk


def test_accept_encoding_parsing():
    """gzip, x-gzip and * accept gzip; q=0 refuses it; other codings alone do not."""
    from rankwise._ui.compress import accepts_gzip

    assert accepts_gzip("gzip") and accepts_gzip("br, gzip;q=0.5") and accepts_gzip("x-gzip") and accepts_gzip("*")
    assert not accepts_gzip(None) and not accepts_gzip("br, deflate") and not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("*;q=0") and not accepts_gzip("identity")


def test_media_are_never_recompressed(store, server):
    """A stored PNG is sent as it is (no Content-Encoding) even when gzip is accepted, byte for byte."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(4096)  # compressible bytes: only the media rule keeps them plain
    sha = hashlib.sha256(png).hexdigest()
    target = store.parent / relative_path(sha, "png")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(png)
    status, headers, body = request(server, f"/media/{sha[:2]}/{sha}.png", gzip_ok=True)
    assert status == 200 and headers["content-type"] == "image/png"
    assert "content-encoding" not in headers and body == png


def test_event_stream_is_not_gzipped(server):
    """The group's event stream is text/event-stream, never gzipped (it must not be buffered)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(
            "GET", f"/api/projects/{PROJECT}/groups/{GROUP}/events", headers={**auth(server), "Accept-Encoding": "gzip"}
        )
        res = conn.getresponse()
        assert res.status == 200 and res.getheader("Content-Type") == "text/event-stream"
        assert res.getheader("Content-Encoding") is None
        assert res.readline() == b"retry: 2000\n"
    finally:
        conn.close()


# ---------------------------------------------------------------- in the browser


@pytest.fixture
def page(browser):
    p = browser.new_page(viewport={"width": 1400, "height": 900})
    p.errors = watch_errors(p)
    yield p
    p.close()


def login(page, server) -> None:
    """Open the start page with the token (sets the cookie), so later addresses need none."""
    page.goto(page_url(server))
    page.wait_for_selector("#projects")


def test_g_project_goes_to_the_project_page(page, server):
    """/g/<project> (no group) replaces itself with /p/<project> and shows the project's groups, not the
    project list."""
    login(page, server)
    page.goto(server.url + f"g/{PROJECT}")
    page.wait_for_selector("#groups")
    assert page.evaluate("location.pathname") == f"/p/{PROJECT}"
    assert page.locator("#groups tbody tr").count() == 1
    assert page.locator("#groups tbody a").inner_text() == GROUP
    page.screenshot(path=artifact("ui-errors-g-project.png"))
    assert page.errors == []


def test_unknown_group_says_so_and_suggests_the_close_one(page, server):
    """An unknown group of a known project: "No group named ..." and a did-you-mean link to the group that
    exists, a link back to the project; an unknown project: "No project named ..." with the close project."""
    login(page, server)
    page.goto(server.url + f"g/{PROJECT}/g3x60")
    page.wait_for_selector("#notfound")
    assert page.locator("#notfound .nf-what").inner_text() == f'No group named "g3x60" in project "{PROJECT}".'
    link = page.locator("#notfound p a").first
    assert link.inner_text() == GROUP and link.get_attribute("href") == f"/g/{PROJECT}/{GROUP}"
    assert page.locator("#notfound .nf-back").get_attribute("href") == f"/p/{PROJECT}"
    page.screenshot(path=artifact("ui-errors-unknown-group.png"))
    page.goto(server.url + "p/errz")
    page.wait_for_selector("#notfound")
    assert page.locator("#notfound .nf-what").inner_text() == 'No project named "errz".'
    assert page.locator("#notfound p a").first.get_attribute("href") == f"/p/{PROJECT}"
    page.goto(server.url + f"g/errz/{GROUP}")
    page.wait_for_selector("#notfound")
    assert page.locator("#notfound .nf-what").inner_text() == 'No project named "errz".'
    page.screenshot(path=artifact("ui-errors-unknown-project.png"))
    assert [e for e in page.errors if "404" not in e] == []  # the 404 answer itself is logged by Chromium


def test_unknown_path_is_the_html_404_page(page, server):
    """A path the app has no page for: the HTML 404 page in the app's look, its link goes home."""
    login(page, server)
    res = page.goto(server.url + "runs/latest")
    assert res.status == 404
    assert page.locator("main h1").inner_text() == "Not found"
    page.screenshot(path=artifact("ui-errors-404.png"))
    page.locator("main a[href='/']").click()
    page.wait_for_selector("#projects")


# counts, in the page, the requests for a project's groups as they are sent (fetch is called synchronously
# when the refresh timer fires, so the count is exact the moment the clock has been advanced)
COUNT_FETCHES = r"""window.__groupFetches = 0;
const realFetch = window.fetch;
window.fetch = (url, ...rest) => {
  // the project page's table (static/project.js), or the groups list it was built from before
  if (/\/projects\/[^/]+\/(groups|table)(\?|$)/.test(String(url))) window.__groupFetches += 1;
  return realFetch(url, ...rest);
};"""


def polls_in(page, server, seconds: int) -> int:
    """Requests for the project's groups in ``seconds`` of the page's (fake) clock, a running group that
    does not change: the clock is advanced a second at a time, each time waiting until every request sent
    has been answered and the next one scheduled (one ``schedulePoll`` per answer)."""
    page.goto(server.url + f"p/{PROJECT}")
    page.wait_for_function("() => window.rw.poll.answers >= 1 && window.__groupFetches === 1")
    for _ in range(seconds):
        page.clock.run_for(1000)
        page.wait_for_function("() => window.rw.poll.answers === window.__groupFetches", timeout=30_000)
    return page.evaluate("window.__groupFetches")


@pytest.fixture(scope="module")
def running_store(tmp_path_factory):
    """A group one of whose ranks is still running (state set in the store) and never changes."""
    import sqlite3

    path = tmp_path_factory.mktemp("running") / "store.sqlite"
    write_big_group(path, PROJECT, GROUP, ranks=2, steps=20, chunk=20)
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE runs SET state = 'running' WHERE name = 'rank-1'")
    con.close()
    return path


@pytest.mark.parametrize("old", [True, False], ids=["fixed-3s", "backoff"])
def test_project_page_polls_back_off_while_nothing_changes(browser, running_store, old):
    """Two minutes of a project page with a running group that does not change: the old fixed 3 s poll
    sends 41 requests (one at load, then every 3 s), the back-off 7 (at 0, 3, 9, 21, 45, 75, 105 s). The
    counts are written to test-artifacts/ui-poll-rate-*.json."""
    page = browser.new_page()
    try:
        page.clock.install()
        page.add_init_script(COUNT_FETCHES)
        if old:
            page.add_init_script("window.rw = { charts: new Map(), page: null, pollMaxMs: 3000 }")
        with served(running_store) as server:
            login(page, server)
            n = polls_in(page, server, 120)
        assert n == (41 if old else 7)
        name = "fixed-3s" if old else "backoff"
        with open(artifact(f"ui-poll-rate-{name}.json"), "w") as f:
            json.dump({"schedule": name, "requests_in_120_s": n, "per_minute": n / 2}, f)
    finally:
        page.close()
