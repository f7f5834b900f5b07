"""The UI's media endpoints and media files over a group logged through the real agent: values per rank and
step (every rank's own, the latest at or before the step), merged group histograms equal to
``rankwise.Api``, the content-addressed files served byte for byte with their MIME type, read-only and
path-validated, and values over the byte budget passed on as skipped."""

from __future__ import annotations

import http.client
from urllib.parse import quote

import pytest

import rankwise
from support.processes import run_ranks
from support.uihelp import auth, env_vars, get, own_env

WORLD, STEPS, BIG = 3, 6, 200
# 20 kB/s with a 4 s burst: the 200×200 noise image (≈120 kB of PNG) can never fit, the small media always do
BUDGET = "20000"
SCRIPT = """
import os, tempfile, numpy as np, rankwise as wandb
rank = int(os.environ["RANK"])
run = wandb.init(project="mui", config={"rank": rank})
rng = np.random.default_rng(rank)
for s in range(%(steps)d):
    d = {"loss": float(s + rank)}
    px = np.zeros((8 + rank, 10 + 2 * s + rank, 3), np.uint8)
    px[..., 0] = 40 * rank; px[..., 1] = 30 * s; px[..., 2] = 255
    d["img"] = wandb.Image(px, caption=f"rank {rank} step {s}")
    d["hist"] = wandb.Histogram(rng.normal(size=400) + s)
    if rank == 1 and s in (1, 4):
        d["sparse"] = wandb.Image(np.full((5, 7), 60 * s, np.uint8))
    if s == 1:
        d["tab"] = wandb.Table(columns=["id", "score", "thumb"],
                               data=[[i, i / 4, wandb.Image(np.full((6, 6, 3), 40 * i, np.uint8))] for i in range(5)])
    if s == 2:
        d["pr"] = wandb.plot.pr_curve([0, 1, 1, 0, 1, 0], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2]],
                                      labels=["neg", "pos"])
        d["cm"] = wandb.plot.confusion_matrix(y_true=[0, 1, 2, 2, 1], preds=[0, 1, 2, 1, 1], class_names=["a", "b", "c"])
        d["page"] = wandb.Html("<h1 id='x'>hello " + str(rank) + "</h1>")
        d["cloud"] = wandb.Object3D(rng.normal(size=(300, 3)))
        with tempfile.TemporaryDirectory() as tmp:  # Object3D reads the file when it is built
            with open(os.path.join(tmp, "cube.obj"), "w") as f:
                f.write("".join(f"v {x} {y} {z}\\n" for x in (0, 1) for y in (0, 1) for z in (0, 1)))
                f.write("f 1 2 4 3\\nf 5 6 8 7\\nf 1 2 6 5\\nf 3 4 8 7\\nf 1 3 7 5\\nf 2 4 8 6\\n")
            d["mesh"] = wandb.Object3D(open(os.path.join(tmp, "cube.obj")))
        d["fig"] = wandb.Plotly({"data": [{"type": "scatter", "x": [1, 2, 3], "y": [2, 1, 3], "name": "a"}], "layout": {"title": {"text": "f"}}})
        d["clip"] = wandb.Video(np.zeros((3, 3, 8, 8), np.uint8), fps=2, format="gif")
        d["sound"] = wandb.Audio(np.sin(np.arange(4000) / 5).astype(np.float32), sample_rate=8000)
    if s == 4 and rank == 0:
        d["big"] = wandb.Image(np.random.default_rng(9).integers(0, 256, (%(big)d, %(big)d, 3), dtype=np.uint8))
    run.log(d)
run.finish()
""" % {"steps": STEPS, "big": BIG}

BASE = "api/projects/mui/groups/job-mui"
TYPES = {
    "img": "image",
    "hist": "histogram",
    "sparse": "image",
    "tab": "table",
    "pr": "chart",
    "cm": "chart",
    "page": "html",
    "cloud": "object3d",
    "mesh": "object3d",
    "fig": "plotly",
    "clip": "video",
    "sound": "audio",
    "big": "image",
}


@pytest.fixture(scope="module")
def store():
    """3 ranks × 6 steps of every media type, logged through the real agent with a small media budget."""
    with own_env() as env:
        run_ranks(env, SCRIPT, WORLD, "job-mui", **env_vars(env), RANKWISE_MEDIA_BYTES_PER_S=BUDGET)
        yield env.store


@pytest.fixture
def group(store):
    api = rankwise.Api(store)
    yield api.group("mui", "job-mui")
    api.close()


def raw(server, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request, without following anything."""
    con = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    con.request(method, path, headers={**auth(server), **(headers or {})})
    res = con.getresponse()
    body = res.read()
    con.close()
    return res.status, {k.lower(): v for k, v in res.getheaders()}, body


def test_group_detail_lists_media_keys_with_types(server):
    """The group detail's ``media`` lists every key with media values and its type; scalars stay in ``keys``."""
    status, d = get(server, BASE)
    assert status == 200
    assert {m["key"]: m["type"] for m in d["media"]} == TYPES
    img = next(m for m in d["media"] if m["key"] == "img")
    assert (img["runs"], img["first"], img["last"]) == (WORLD, 0, STEPS - 1)
    assert [k["key"] for k in d["keys"]] == ["loss"]
    summary = d["runs"][0]["summary"]["img"]
    assert summary["url"] == "/" + summary["path"] and summary["caption"] == f"rank 0 step {STEPS - 1}"


def test_media_at_a_step_is_every_ranks_own_value(server, group):
    """media?key&step returns each rank's own reference at that step (with its url), the steps for the
    slider, and without ``step`` the last step."""
    for step in (0, 3):
        status, body = get(server, f"{BASE}/media?key=img&step={step}")
        assert status == 200 and body["type"] == "image"
        assert body["steps"] == list(range(STEPS)) and body["step"] == step
        assert [r["rank"] for r in body["ranks"]] == list(range(WORLD))
        for r in body["ranks"]:
            ((s, ref),) = group.media("img", step=step)[r["rank"]]
            assert r["step"] == s == step and r["value"] == {**ref, "url": "/" + ref["path"]}
            assert r["value"]["width"] == 10 + 2 * step + r["rank"]
    status, body = get(server, f"{BASE}/media?key=img")
    assert body["step"] == STEPS - 1 and all(r["step"] == STEPS - 1 for r in body["ranks"])


def test_media_shows_the_latest_value_at_or_before_the_step(server, group):
    """A key logged by rank 1 only at steps 1 and 4: at step 3 rank 1 shows its step-1 value, the other
    ranks have none; before step 1 nobody has one; with rank= only that rank is returned."""
    status, body = get(server, f"{BASE}/media?key=sparse&step=3")
    assert status == 200 and body["steps"] == [1, 4]
    by_rank = {r["rank"]: r for r in body["ranks"]}
    assert by_rank[0]["value"] is None and by_rank[2]["value"] is None and by_rank[0]["step"] is None
    ref = group.media("sparse", step=1)[1][0][1]
    assert by_rank[1]["step"] == 1 and by_rank[1]["value"] == {**ref, "url": "/" + ref["path"]}
    status, body = get(server, f"{BASE}/media?key=sparse&step=0")
    assert all(r["value"] is None for r in body["ranks"])
    status, body = get(server, f"{BASE}/media?key=sparse&step=4&rank=1&steps=0")
    assert status == 200 and body["steps"] is None and [r["rank"] for r in body["ranks"]] == [1]
    assert body["ranks"][0]["step"] == 4


def test_table_chart_and_inline_values(server, group):
    """A table arrives with its rows and its image cells as references with urls; charts and plotly figures
    arrive inline, exactly as stored."""
    status, body = get(server, f"{BASE}/media?key=tab&rank=2")
    tab = body["ranks"][0]["value"]
    stored = group.media("tab", step=1)[2][0][1]
    assert tab["columns"] == ["id", "score", "thumb"] and len(tab["data"]) == 5
    for row, want in zip(tab["data"], stored["data"]):
        assert row[:2] == want[:2] and row[2] == {**want[2], "url": "/" + want[2]["path"]}
    for key in ("pr", "cm", "fig"):
        status, body = get(server, f"{BASE}/media?key={key}")
        for r in body["ranks"]:
            assert r["step"] == 2 and r["value"] == group.media(key, step=2)[r["rank"]][0][1]


def test_skipped_value_is_passed_on_as_skipped(server, group):
    """The image over the byte budget is a reference marked skipped, without a url; the other ranks have no
    value of that key."""
    status, body = get(server, f"{BASE}/media?key=big")
    assert status == 200 and body["steps"] == [4]
    v = body["ranks"][0]["value"]
    assert v["skipped"] == "byte budget" and "url" not in v and "path" not in v
    assert (v["_type"], v["width"], v["height"]) == ("image", BIG, BIG) and v["size"] > 80_000
    assert v == group.media("big")[0][0][1]
    assert [r["value"] for r in body["ranks"][1:]] == [None, None]


def test_histograms_merged_per_rank_and_thinned(server, group):
    """histograms: merged over the ranks by default (== Api.histograms), one rank's with rank=R, at most
    ``width`` columns chosen evenly (first and last kept), limited to start/end."""
    status, body = get(server, f"{BASE}/histograms?key=hist")
    assert status == 200 and body["rank"] is None and body["steps"] == STEPS and body["shown"] == STEPS
    want = group.histograms("hist")
    assert [(c["step"], c["bins"], c["values"], c["ranks"]) for c in body["columns"]] == [
        (s, h["bins"], h["values"], h["ranks"]) for s, h in want
    ]
    assert all(c["ranks"] == list(range(WORLD)) for c in body["columns"])
    assert body["lo"] == min(h["bins"][0] for _, h in want) and body["hi"] == max(h["bins"][-1] for _, h in want)
    status, body = get(server, f"{BASE}/histograms?key=hist&rank=2")
    own = group.histograms("hist", rank=2)
    assert [(c["step"], c["values"]) for c in body["columns"]] == [(s, h["values"]) for s, h in own]
    status, body = get(server, f"{BASE}/histograms?key=hist&width=2")
    assert [c["step"] for c in body["columns"]] == [0, STEPS - 1] and body["steps"] == STEPS and body["shown"] == 2
    status, body = get(server, f"{BASE}/histograms?key=hist&start=2&end=3")
    assert [c["step"] for c in body["columns"]] == [2, 3]
    assert body["range"] == [2, 3] and body["domain"] == [0, STEPS - 1]


@pytest.mark.parametrize(
    "path, status",
    [
        ("media", 400),
        ("media?key=nope", 404),
        ("media?key=img&step=x", 400),
        ("media?key=img&step=-1", 400),
        ("media?key=img&rank=7", 404),
        ("media?key=img&colour=red", 400),
        ("histograms?key=hist&rank=9", 404),
        ("histograms?key=hist&width=0", 400),
        ("histograms?key=hist&start=5&end=1", 400),
    ],
)
def test_media_endpoint_errors(server, path, status):
    """Bad parameters are 400 naming the parameter, unknown keys and ranks 404, as JSON."""
    code, body = get(server, f"{BASE}/{path}")
    assert code == status and body["status"] == status and body["error"]


def test_media_files_served_byte_exact_with_type_and_caching(server, group):
    """Every referenced file is served at its url byte for byte with its MIME type, cached for good
    (immutable, ETag = hash; If-None-Match → 304), with byte ranges for seeking."""
    api = group._api
    refs = {
        "img": group.media("img", step=0)[0][0][1],
        "clip": group.media("clip")[0][0][1],
        "sound": group.media("sound")[1][0][1],
        "cloud": group.media("cloud")[2][0][1],
    }
    mime = {"img": "image/png", "clip": "image/gif", "sound": "audio/wav", "cloud": "application/octet-stream"}
    for key, ref in refs.items():
        data = api.media_path(ref).read_bytes()
        status, headers, body = raw(server, "/" + ref["path"])
        assert status == 200 and body == data and headers["content-type"] == mime[key]
        assert headers["cache-control"] == "public, max-age=31536000, immutable"
        assert headers["etag"] == f'"{ref["sha256"]}"' and headers["accept-ranges"] == "bytes"
        assert raw(server, "/" + ref["path"], {"If-None-Match": headers["etag"]})[0] == 304
    data = api.media_path(refs["sound"]).read_bytes()
    status, headers, body = raw(server, "/" + refs["sound"]["path"], {"Range": "bytes=10-99"})
    assert status == 206 and body == data[10:100] and headers["content-range"] == f"bytes 10-99/{len(data)}"
    status, headers, body = raw(server, "/" + refs["sound"]["path"], {"Range": "bytes=-16"})
    assert status == 206 and body == data[-16:]
    status, headers, _ = raw(server, "/" + refs["sound"]["path"], {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
    status, headers, body = raw(server, "/" + refs["img"]["path"], method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) == refs["img"]["size"]


def test_logged_html_is_served_sandboxed(server, group):
    """Logged HTML is served as text/html under a CSP sandbox (an opaque origin even when opened directly)."""
    ref = group.media("page")[0][0][1]
    status, headers, body = raw(server, "/" + ref["path"])
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"] == "sandbox allow-scripts"
    assert b"hello 0" in body and body == group._api.media_path(ref).read_bytes()


def test_media_urls_are_validated_and_read_only(server, group):
    """Only /media/<ab>/<sha256>.<ext> names of files in the store are served: traversal, wrong directory,
    upper case, unknown hashes and other methods are refused without touching other files."""
    ref = group.media("img", step=0)[0][0][1]
    sha = ref["sha256"]
    other = "00" if sha[:2] != "00" else "01"
    for path in (
        "/media/../store.sqlite",
        "/media/%2e%2e/store.sqlite",
        f"/media/{sha[:2]}/..%2f..%2fstore.sqlite",
        f"/media/{other}/{sha}.png",
        f"/media/{sha[:2].upper()}/{sha.upper()}.png",
        f"/media/{sha[:2]}/{sha}.PNG",
        f"/media/{sha[:2]}/{sha}",
        f"/media/{sha[:2]}/{'0' * 64}.png",
        f"/media/{sha[:2]}/{sha}.png/x",
        "/media",
        f"/media/{sha[:2]}/{sha}.toolongext",
    ):
        status, headers, body = raw(server, path)
        assert status == 404, path
        assert b"SQLite" not in body
    assert raw(server, "/" + ref["path"], method="POST")[0] == 405
    assert raw(server, "/" + ref["path"], method="DELETE")[0] == 405
    assert group._api.media_path(ref).is_file()


def test_api_index_lists_media_endpoints(server):
    """GET /api names the media and histogram endpoints and the media file URLs."""
    status, body = get(server, "api")
    text = " ".join(body["endpoints"])
    assert "/media?key=" in text and "/histograms?key=" in text and "/media/{ab}/{sha256}.{ext}" in text


def test_series_of_a_media_key_is_404_not_a_crash(server):
    """The numeric series endpoint answers 404 for a media key (it has no group rows) instead of failing."""
    status, body = get(server, f"{BASE}/series?key={quote('img')}")
    assert status == 404 and "no key" in body["error"]
