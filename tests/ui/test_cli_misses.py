"""A project, group or key named on the command line that the store does not hold: exit status 1 and
"no project/group/key named X (ARGUMENT) ...; did you mean ..." on standard error, nothing on standard
output (``rankwise export --keys typo`` used to print a header and exit 0); hits print exactly what they
printed before. The store is written straight through the SQLite store classes
(tests/support/uihelp.py ``write_big_group``: keys loss, acc, grad_norm, lr)."""

from __future__ import annotations

import json

import pytest

from rankwise._cli import main
from support.uihelp import write_big_group

PROJECT, GROUP = "misses", "lr-sweep-1"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("misses") / "store.sqlite"
    write_big_group(path, PROJECT, GROUP, ranks=2, steps=50, chunk=50)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["export", "--keys", "los"],
            "rankwise export: no key named 'los' (--keys) in group misses/lr-sweep-1; did you mean 'loss'?",
        ),
        (
            ["export", "--per-rank", "--keys", "loss,gradnorm"],
            "rankwise export: no key named 'gradnorm' (--keys) in group misses/lr-sweep-1; did you mean 'grad_norm'?",
        ),
        (
            ["show", "--keys", "acc,typo"],
            "rankwise show: no key named 'typo' (--keys) in group misses/lr-sweep-1; keys: acc, grad_norm, loss, lr",
        ),
        (
            ["tail", "--once", "--keys", "lrr"],
            "rankwise tail: no key named 'lrr' (--keys) in group misses/lr-sweep-1; did you mean 'lr'?",
        ),
        (
            ["runs", "--project", "mises"],
            "rankwise runs: no project named 'mises' (--project) in {store}; did you mean 'misses'?",
        ),
        (["runs", "--project", "nope"], "rankwise runs: no project named 'nope' (--project) in {store}"),
        (["show", "--project", "nope"], "rankwise show: no project named 'nope' (--project) in {store}"),
        (["runs", "lr-sweep-2"], "rankwise runs: no group named 'lr-sweep-2' (GROUP); did you mean 'lr-sweep-1'?"),
        (
            ["show", "lr-sweep-2", "-p", "misses"],
            "rankwise show: no group named 'lr-sweep-2' (GROUP) in project 'misses'; did you mean 'lr-sweep-1'?",
        ),
        (["export", "zzz"], "rankwise export: no group named 'zzz' (GROUP)"),
        (["tail", "--once", "zzz"], "rankwise tail: no group named 'zzz' (GROUP)"),
    ],
)
def test_a_miss_exits_1_naming_the_argument_and_the_closest_names(store, capsys, argv, message):
    """Exit 1, nothing on stdout, exactly one line on stderr: the miss, the argument and the close names."""
    code, out, err = run(capsys, *argv, "--store", str(store))
    assert code == 1
    assert out == ""
    assert err == message.format(store=store) + "\n"


def test_hits_behave_as_before(store, capsys):
    """The same commands with names that exist exit 0 and print their tables (values as Api gives them)."""
    import rankwise

    g = rankwise.Api(store).group(PROJECT, GROUP)
    code, out, _ = run(capsys, "export", "--keys", "loss", "-f", "jsonl", "--store", str(store))
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["mean"] for r in rows] == g.history("loss")["mean"].tolist()
    code, out, _ = run(capsys, "show", "--keys", "acc,loss", "--json", "--store", str(store))
    assert code == 0 and [k["key"] for k in json.loads(out)["keys"]] == ["acc", "loss"]
    code, out, _ = run(capsys, "runs", "--project", PROJECT, "--json", "--store", str(store))
    assert code == 0 and [x["name"] for x in json.loads(out)] == [GROUP]
    code, out, _ = run(capsys, "runs", GROUP, "-p", PROJECT, "--json", "--store", str(store))
    assert code == 0 and [r["rank"] for r in json.loads(out)] == [0, 1]
    code, out, _ = run(capsys, "tail", "--once", "--keys", "lr", "--store", str(store))
    assert code == 0 and out.startswith(f"group {PROJECT}/{GROUP}: 2 of 2 ranks, finished")


def test_runs_of_an_empty_store_without_project_still_exits_0(tmp_path, capsys):
    """No --project and no groups: the old "no groups in" line and exit 0 (nothing was named, nothing missed)."""
    from agent.store.sqlite import SQLiteStore

    path = tmp_path / "store.sqlite"
    SQLiteStore(path).close()
    code, out, err = run(capsys, "runs", "--store", str(path))
    assert (code, out, err) == (0, f"no groups in {path}\n", "")
