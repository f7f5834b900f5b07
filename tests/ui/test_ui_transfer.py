"""What a chart with per-rank lines costs on the wire: per-rank values carry 6 significant digits by default
(``digits=``; the band keeps full precision), a chart of one rank asks for that rank alone (``rank=``), and a
64-rank × 3k-step chart at 700 px is under 500 KB gzipped (issue 14; benchmark 11 prints the same bytes)."""

from __future__ import annotations

import gzip
import http.client
import json
import math
import sys
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.ui_transfer import write_group
from rankwise._ui import series as S
from support.uihelp import auth, get, served

RANKS, STEPS = 8, 500
SERIES = "/api/projects/bench/groups/transfer/series"


def sig_digits(x: float) -> int:
    """Significant digits of the shortest repr of ``x`` (what JSON writes)."""
    mantissa = repr(abs(x)).lower().split("e")[0].replace(".", "")
    return len(mantissa.strip("0"))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False), min_size=1, max_size=50),
    st.integers(1, 17),
)
def test_significant_rounds_to_the_nearest_decimal_of_that_many_digits(values, digits):
    """Every rounded value prints in at most ``digits`` significant digits and is within half a unit of the
    last one of the exact binary value (a hair more at exact decimal ties: the result is itself a double); a
    value that would round past the largest double stays as it is."""
    out = S.significant(np.array(values), digits)
    for x, y in zip(values, out.tolist()):
        if x == 0:
            assert y == 0
            continue
        unit = Decimal(10) ** (Decimal(x).adjusted() - digits + 1)
        if abs(Decimal(x)) + unit / 2 > Decimal(sys.float_info.max):  # may round past the largest double
            assert y in (x, float(f"{x:.{digits}g}")), (x, y)
            continue
        assert sig_digits(y) <= digits, (x, y)
        assert abs(Decimal(y) - Decimal(x)) <= unit / 2 * (1 + Decimal(10) ** (digits - 15)), (x, y)


def test_significant_zero_digits_and_non_finite_values_pass_through():
    """``digits=0`` returns the values as they are; NaN and ±inf stay NaN and ±inf at any digits."""
    a = np.array([1 / 3, math.nan, math.inf, -math.inf, 0.0])
    assert S.significant(a, 0) is not None and S.significant(a, 0).tolist()[0] == 1 / 3
    got = S.significant(a, 6)
    assert got[0] == 0.333333 and math.isnan(got[1]) and got[2] == math.inf and got[3] == -math.inf and got[4] == 0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A finished group of 8 ranks × 500 steps of ``loss`` with full-precision values (benchmark 11's writer)."""
    path = tmp_path_factory.mktemp("tf") / "store.sqlite"
    write_group(path, RANKS, STEPS)
    return path


@pytest.fixture(scope="module")
def server(store):
    with served(store) as s:
        yield s


def stored(store) -> dict[int, np.ndarray]:
    import rankwise

    api = rankwise.Api(store)
    try:
        g = api.group("bench", "transfer")
        return {r.rank: g.run(rank=r.rank).history_arrays(["loss"])["loss"][1] for r in g.runs}
    finally:
        api.close()


def test_rank_lines_default_to_six_significant_digits_and_the_band_is_exact(server, store):
    """``ranks=1`` at full resolution: each rank's values are its stored values at 6 significant digits (the
    nearest, as Python's %.6g formats them), the group mean exactly the stored group row's; ``digits=0`` gives
    the stored values as they are, ``digits=3`` three digits."""
    import rankwise

    values = stored(store)
    status, s = get(server, f"{SERIES}?key=loss&width=0&ranks=1")
    assert status == 200 and s["resolution"] == "full" and [r["rank"] for r in s["ranks"]] == list(range(RANKS))
    for line in s["ranks"]:
        assert line["values"] == [float(f"{v:.6g}") for v in values[line["rank"]].tolist()], line["rank"]
    api = rankwise.Api(store)
    try:
        assert s["mean"] == api.group("bench", "transfer").history("loss")["mean"].tolist()
    finally:
        api.close()
    assert any(sig_digits(v) > 6 for v in values[0].tolist())  # the data has more digits than are sent
    status, exact = get(server, f"{SERIES}?key=loss&width=0&ranks=1&digits=0")
    assert status == 200 and [r["values"] for r in exact["ranks"]] == [values[r].tolist() for r in range(RANKS)]
    status, three = get(server, f"{SERIES}?key=loss&width=0&ranks=1&digits=3")
    assert status == 200 and three["ranks"][2]["values"] == [float(f"{v:.3g}") for v in values[2].tolist()]
    status, bad = get(server, f"{SERIES}?key=loss&digits=18")
    assert status == 400 and "digits=18 must be between 0 and 17" in bad["error"]


@pytest.mark.parametrize("width", [0, 100])
def test_rank_parameter_sends_that_ranks_line_alone(server, width):
    """``rank=5`` answers the same band and x as ``ranks=1`` (full resolution and bucketed) with one line,
    rank 5's, equal to rank 5's line there; a rank the group does not have is a 404 naming its ranks, a
    non-number a 400."""
    status, one = get(server, f"{SERIES}?key=loss&width={width}&rank=5")
    status_all, every = get(server, f"{SERIES}?key=loss&width={width}&ranks=1")
    assert status == status_all == 200
    assert [r["rank"] for r in one["ranks"]] == [5]
    assert one["ranks"][0] == every["ranks"][5]
    assert {k: v for k, v in one.items() if k != "ranks"} == {k: v for k, v in every.items() if k != "ranks"}
    status, missing = get(server, f"{SERIES}?key=loss&rank=9")
    assert status == 404 and missing["error"] == "no rank 9 in group transfer (ranks 0–7)"
    status, bad = get(server, f"{SERIES}?key=loss&rank=five")
    assert status == 400 and "rank='five' is not an integer" in bad["error"]


@pytest.fixture(scope="module")
def served64(tmp_path_factory):
    """A UI server over a finished group of 64 ranks × 3,000 steps (benchmark 11's writer)."""
    path = tmp_path_factory.mktemp("tf64") / "store.sqlite"
    write_group(path, 64, 3000)
    with served(path) as server:
        yield server


def _gzipped(server, query: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("GET", f"{SERIES}?{query}", headers={**auth(server), "Accept-Encoding": "gzip"})
        res = conn.getresponse()
        body = res.read()
    finally:
        conn.close()
    assert res.status == 200 and res.getheader("Content-Encoding") == "gzip"
    return len(body), json.loads(gzip.decompress(body))


# width asked -> buckets sent: 64 lines x 2 values a bucket stay within RANK_VALUES (100,000) from 782 px on
@pytest.mark.parametrize(("width", "buckets"), [(700, 700), (1400, 781), (4000, 781)])
def test_a_64_rank_chart_is_under_500_kb_on_the_wire_at_any_width(served64, width, buckets):
    """Issue 14's transfer budget, counted in bytes: the per-rank series of 64 ranks × 3,000 steps fetched with
    ``Accept-Encoding: gzip`` is under 500 KB at 700 px (64 lines of 1,400 values) and also for a chart as
    wide as a page can make one: per-rank lines get at most 100,000 values, so at 1,400 and 4,000 px the
    server sends 781 buckets (said in ``buckets``); the band and x have as many rows as each line."""
    size, s = _gzipped(served64, f"key=loss&width={width}&ranks=1")
    assert size < 500_000, (width, size)
    assert s["resolution"] == "minmax" and s["buckets"] == buckets and len(s["ranks"]) == 64
    assert {len(r["values"]) for r in s["ranks"]} == {len(s["x"])} == {len(s["mean"])} == {2 * buckets}


def test_one_rank_and_the_band_alone_keep_the_charts_width(served64):
    """The budget is for per-rank lines: without them, or with one rank's line (``rank=``), 1,000 px is 1,000
    buckets of two rows; ``width=0`` (every point, what exact smoothing asks for) is not capped either."""
    for query in ("key=loss&width=1000", "key=loss&width=1000&rank=3"):
        _, s = _gzipped(served64, query)
        assert s["resolution"] == "minmax" and s["buckets"] == 1000 and len(s["x"]) == 2000, query
    _, s = _gzipped(served64, "key=loss&width=0&ranks=1")
    assert s["resolution"] == "full" and {len(r["values"]) for r in s["ranks"]} == {3000}
