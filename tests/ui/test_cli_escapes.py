"""Terminal escapes: names and keys in the store are any string (older stores, other writers); the CLI's
``show``, ``runs``, ``tail`` and ``export`` never print their control characters raw, they print them
escaped (``\\x1b``), so a key cannot retitle, clear or recolour the terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

KEY = "\x1b]0;pwned\x07loss\x1b[2J"
KEY_SHOWN = "\\x1b]0;pwned\\x07loss\\x1b[2J"
GROUP = "job\x07bell"
GROUP_SHOWN = "job\\x07bell"
RUN = "rank\u202e0"  # a right-to-left override: reorders what follows on the terminal
TEXT = "a\x1bb\nc"  # a string value: ESC escaped in CSV, the line break kept inside the quoted cell


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A finished 1-rank group written through the store classes with control characters in the group
    name, the run name and a key (the call site refuses such keys now; a store may still hold them)."""
    from agent.store.sqlite import SQLiteStore
    from grouping import finalize, reduce_points

    path = tmp_path_factory.mktemp("esc") / "store.sqlite"
    st = SQLiteStore(path)
    info = {"name": RUN, "run_key": "esc-0", "rank": 0, "local_rank": 0, "node": "node\x1b[31m", "pid": 1, "config": {}}
    g, r, _ = st.register("esc", GROUP, 1, info, 1.7e9)
    steps = np.arange(3, dtype=np.int64)
    vals = np.array([1.0, 2.0, 3.0])
    with st.transaction() as txn:
        txn.add_history(r.id, "_timestamp", steps, 1.7e9 + steps.astype(float), False)
        txn.add_history(r.id, KEY, steps, vals, False)
        txn.add_history(r.id, "note", steps[:1], [TEXT], False)
        points = reduce_points(steps, np.zeros(3, dtype=np.int64), vals)
        txn.add_group_rows(g.id, KEY, finalize(points, 1), False)
    with st.transaction() as txn:
        r.state, r.exit_code, r.step, r.rows, r.finished = "finished", 0, 3, 3, 1.7e9 + 3
        txn.put_run(r)
        g.sealed_through = 2
        txn.put_group(g)
    st.close()
    return path


def cli(store, *args: str) -> tuple[str, str]:
    res = subprocess.run(
        [sys.executable, "-m", "rankwise._cli", *args, "--store", str(store)],
        capture_output=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.decode(), res.stderr.decode()


def assert_no_controls(text: str) -> None:
    bad = sorted({hex(ord(c)) for c in text if not c.isprintable() and c != "\n"})
    assert bad == [], bad


@pytest.mark.parametrize("args", [("show", GROUP), ("runs",), ("runs", GROUP), ("tail", GROUP, "--once")])
def test_tables_print_control_characters_escaped(store, args):
    """``show``, ``runs`` (groups and the runs of a group) and ``tail --once`` print the key, group, run
    and node names with ESC, BEL and the right-to-left override escaped."""
    out, err = cli(store, *args)
    assert_no_controls(out + err)
    if args[0] in ("show", "tail"):
        assert KEY_SHOWN in out and GROUP_SHOWN in out
    else:
        assert GROUP_SHOWN in out
    if args == ("runs", GROUP):
        assert "rank\\u202e0" in out and "node\\x1b[31m" in out


def test_export_csv_escapes_and_jsonl_stays_exact(store, tmp_path):
    """``export`` as CSV (group rows, per-rank rows; to stdout and to a file, and its message) escapes the
    key's control characters; JSON lines carry them exactly in JSON escapes (they read back equal)."""
    out, err = cli(store, "export", GROUP)
    assert_no_controls(out + err)
    assert out.splitlines()[1].startswith(f"{KEY_SHOWN},0,1,1,1.0,")
    out, _ = cli(store, "export", GROUP, "--per-rank")
    assert_no_controls(out.replace("\n", ""))
    header = out.splitlines()[0].split(",")
    assert header == ["rank", "run", "_step", "_timestamp", "_runtime", KEY_SHOWN, "note"]
    assert '"a\\x1bb\nc"' in out  # the quoted cell keeps its line break
    _, err = cli(store, "export", GROUP, "--out", str(tmp_path / "g.csv"))
    assert_no_controls(err)
    assert GROUP_SHOWN in err
    assert_no_controls((tmp_path / "g.csv").read_text())
    out, _ = cli(store, "export", GROUP, "--format", "jsonl")
    assert_no_controls(out)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["key"] for r in rows] == [KEY] * 3 and [r["mean"] for r in rows] == [1.0, 2.0, 3.0]


def test_safe_escapes_only_what_is_not_printable():
    """``safe`` keeps printable text (unicode letters, block characters) as it is and escapes controls."""
    from rankwise._table import safe

    assert safe("loss/ü ▁▂█ 步") == "loss/ü ▁▂█ 步"
    assert safe("a\x1b[2Jb\x07\t\x7f\x9b\u200b") == "a\\x1b[2Jb\\x07\\t\\x7f\\x9b\\u200b"
    assert safe("a\nb") == "a\\nb" and safe("a\nb", keep="\n") == "a\nb"
