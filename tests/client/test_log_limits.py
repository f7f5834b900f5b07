"""What ``log()`` refuses at the call site (issue 9: terminal escapes in keys, key collisions, deep nesting,
integers beyond int64, wide rows, oversized values): ``ValueError`` naming the key and the limit, nothing
queued, the run usable afterwards."""

from __future__ import annotations

import pytest

from client import values
from client.errors import InvalidValueError
from support.offline import close, offline_run, rows_after

# the documented limits (README, Guarantees); the defaults let this file run against older code
MAX_DEPTH = getattr(values, "MAX_DEPTH", 32)
MAX_KEYS_PER_ROW = getattr(values, "MAX_KEYS_PER_ROW", 10_000)
MAX_VALUE_BYTES = getattr(values, "MAX_VALUE_BYTES", 32 << 20)
MAX_LOG_BYTES = getattr(values, "MAX_LOG_BYTES", 48 << 20)


@pytest.fixture
def run():
    r = offline_run()
    yield r
    close(r)


def _refused(run, data, fragment: str) -> None:
    with pytest.raises(InvalidValueError, match=fragment):
        run.log(data)
    assert run.step == 0 and len(run._writer.ops) == 0


@pytest.mark.parametrize(
    "key",
    ["a\x1b[2Jb", "bell\x07", "tab\there", "new\nline", "nul\x00", "del\x7f", "c1\x9b31m", "\x1b]0;title\x07"],
)
def test_keys_with_control_characters_are_refused(run, key):
    """ESC, BEL, TAB, NL, NUL, DEL and C1 controls in a key (top level or nested) raise naming the key:
    keys reach terminals through ``rankwise show`` and ``export``."""
    _refused(run, {key: 1.0}, "control character")
    _refused(run, {"outer": {key: 1.0}}, "control character")


def test_printable_unicode_keys_are_accepted(run):
    """Non-ASCII printable keys (accents, CJK, emoji, spaces) are fine."""
    run.log({"ünïcode": 1, "损失": 2, "loss 🔥": 3, "a b": 4})
    assert rows_after(run)[0] == {"_step": 0, "_late": False, "ünïcode": 1, "损失": 2, "loss 🔥": 3, "a b": 4}


def test_lone_surrogate_in_a_key_is_refused(run):
    """A key msgpack cannot encode (a lone surrogate) raises at the call, not on the I/O thread."""
    _refused(run, {"bad\ud800": 1}, "surrogate")


@pytest.mark.parametrize(
    "data",
    [{"a": {"b": 1}, "a.b": 2}, {"a.b": 2, "a": {"b": 1}}, {"x": {"y": {"z": 1}}, "x.y": {"z": 2}}],
)
def test_colliding_keys_are_refused_naming_the_key(run, data):
    """A nested dict and a dotted key that flatten to the same name raise ValueError naming that key
    instead of silently keeping one of the values."""
    name = "a.b" if "a.b" in data else "x.y.z"
    _refused(run, data, f"key '{name}' is given twice")


def test_nesting_beyond_the_documented_depth_is_refused(run):
    """MAX_DEPTH levels of nested dicts are accepted; one more raises ValueError (never RecursionError),
    and so do 2,000 levels and a dict that contains itself."""

    def nest(levels: int) -> dict:
        d: dict = {"leaf": 1}
        for _ in range(levels - 1):
            d = {"n": d}
        return d

    run.log(nest(MAX_DEPTH))
    assert rows_after(run)[0]["n." * (MAX_DEPTH - 1) + "leaf"] == 1
    run2 = offline_run()
    try:
        for data in (nest(MAX_DEPTH + 1), nest(2000)):
            _refused(run2, data, f"nested deeper than {MAX_DEPTH}")
        cyclic: dict = {}
        cyclic["self"] = cyclic
        _refused(run2, cyclic, "nested deeper")
    finally:
        close(run2)


def test_more_keys_than_the_row_limit_are_refused(run):
    """MAX_KEYS_PER_ROW keys in one call are accepted; one more raises ValueError naming the limit."""
    run.log({f"k{i}": i for i in range(MAX_KEYS_PER_ROW)})
    assert len(rows_after(run)[0]) == MAX_KEYS_PER_ROW + 2
    run2 = offline_run()
    try:
        _refused(run2, {f"k{i}": i for i in range(MAX_KEYS_PER_ROW + 1)}, f"more than {MAX_KEYS_PER_ROW} keys")
        _refused(run2, {"a": {f"k{i}": i for i in range(MAX_KEYS_PER_ROW + 1)}}, f"more than {MAX_KEYS_PER_ROW}")
    finally:
        close(run2)


def test_a_row_merged_from_several_calls_keeps_at_most_the_row_limit_and_counts_the_rest(run):
    """Calls with commit=False (or step=) merge into one row: a row the agent would refuse whole is never
    sent. The first MAX_KEYS_PER_ROW keys stay, repeated keys cost nothing, the keys beyond are dropped
    and counted as "row too wide" (values), and the next step's row is whole again."""
    half = MAX_KEYS_PER_ROW // 2
    run.log({f"a{i}": i for i in range(half)}, commit=False)
    run.log({f"a{i}": -i for i in range(half)}, commit=False)  # the same keys again: no growth
    run.log({f"b{i}": i for i in range(half)}, commit=False)  # exactly at the limit
    run.log({"c0": 1, "c1": 2, "c2": 3}, commit=False)  # three keys too many
    run.log({"x": 1.5})  # commits the row (x too is beyond the limit)
    run.log({"y": 2.5})
    rows = rows_after(run)
    assert [r["_step"] for r in rows] == [0, 1]
    first = {k: v for k, v in rows[0].items() if not k.startswith("_")}
    assert len(first) == MAX_KEYS_PER_ROW
    assert first["a3"] == -3 and first[f"b{half - 1}"] == half - 1
    assert not {"c0", "c1", "c2", "x"} & first.keys()
    assert rows[1]["y"] == 2.5
    assert run._writer.drop_counts() == {"row too wide": 4}


def test_value_above_the_value_limit_is_refused_naming_key_and_limit(run):
    """A string of MAX_VALUE_BYTES (in UTF-8 bytes: 'é' counts 2) or a list of numbers that large raises
    ValueError naming the key and the limit; one byte less is accepted."""
    limit = MAX_VALUE_BYTES >> 20
    _refused(run, {"text": "x" * MAX_VALUE_BYTES}, f"'text'.*limit of {limit} MiB")
    _refused(run, {"text": "é" * (MAX_VALUE_BYTES // 2)}, f"'text'.*limit of {limit} MiB")
    _refused(run, {"nums": [1.0] * (MAX_VALUE_BYTES // 9)}, f"'nums'.*limit of {limit} MiB")
    run.log({"text": "x" * (MAX_VALUE_BYTES - 8)})
    assert len(rows_after(run)[0]["text"]) == MAX_VALUE_BYTES - 8


def test_one_call_above_the_call_limit_is_refused(run):
    """Values of one call adding up to more than MAX_LOG_BYTES raise ValueError naming the limit."""
    part = MAX_VALUE_BYTES - 64
    n = MAX_LOG_BYTES // part + 1
    _refused(run, {f"t{i}": "x" * part for i in range(n)}, f"limit of {MAX_LOG_BYTES >> 20} MiB per call")


def test_summary_and_config_values_obey_the_same_limits(run):
    """run.summary[k] = v and config.update() refuse what log() refuses: oversized values, ints beyond
    int64 (config: beyond what can be stored), lone surrogates."""
    with pytest.raises(InvalidValueError, match="'big'.*limit of"):
        run.summary["big"] = "x" * (MAX_VALUE_BYTES + 1)
    with pytest.raises(InvalidValueError, match="outside int64"):
        run.summary["n"] = 2**64
    with pytest.raises(InvalidValueError, match="'n'"):
        run.config.update({"n": 2**64})
    with pytest.raises(InvalidValueError, match="'s'"):
        run.config.update({"s": "\ud800"})
    with pytest.raises(InvalidValueError, match="'blob'.*limit of"):
        run.config.update({"ok": 1, "blob": "b" * (MAX_VALUE_BYTES + 1)})
    assert len(run._writer.ops) == 0 and "blob" not in run.config
