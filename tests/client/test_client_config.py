"""``run.config``: accepted from a dict, argparse.Namespace or dataclass; dict and attribute access;
updates are forwarded to the agent as control ops; non-plain values are kept as strings."""

from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import rankwise
from client.summary import Config, to_config
from support.offline import close, drain_batches, offline_run


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


@dataclasses.dataclass
class Optim:
    name: str = "adam"
    betas: tuple = (0.9, 0.99)


@dataclasses.dataclass
class TrainConfig:
    lr: float = 3e-4
    layers: list = dataclasses.field(default_factory=lambda: [64, 64])
    optim: Optim = dataclasses.field(default_factory=Optim)
    out: Path = Path("/runs/x")


EXPECTED_DATACLASS = {
    "lr": 3e-4,
    "layers": [64, 64],
    "optim": {"name": "adam", "betas": [0.9, 0.99]},
    "out": "/runs/x",
}


def disabled(config):
    """A run with no agent at all (mode=disabled): init() converts the config the same way."""
    return rankwise.init(project="cfg", group="g", mode="disabled", config=config, reinit="create_new")


def test_init_with_a_dict_keeps_plain_values_and_stringifies_the_rest():
    """Numbers, strings, bools, None, lists and nested dicts are kept (tuples as lists, numpy scalars
    as Python numbers); anything else (Path, arrays, objects) becomes its string form."""
    cfg = {
        "lr": 0.1,
        "steps": 10,
        "amp": True,
        "note": None,
        "name": "x",
        "sizes": (1, 2),
        "nested": {"a": {"b": np.int64(3)}},
        5: "int key",
        "path": Path("/data"),
        "arr": np.array([1, 2]),
        "obj": Opaque(),
        "np": np.float32(0.5),
        "set": {1},
    }
    run = disabled(cfg)
    assert run.config.as_dict() == {
        "lr": 0.1,
        "steps": 10,
        "amp": True,
        "note": None,
        "name": "x",
        "sizes": [1, 2],
        "nested": {"a": {"b": 3}},
        "5": "int key",
        "path": "/data",
        "arr": "[1 2]",
        "obj": "<opaque>",
        "np": 0.5,
        "set": "{1}",
    }
    assert type(run.config["nested"]["a"]["b"]) is int
    assert run._hello_run()["config"] == run.config.as_dict()  # what the agent receives at HELLO


def test_init_with_an_argparse_namespace():
    """argparse.Namespace: its attributes become the config."""
    ns = argparse.ArgumentParser().parse_args([])
    ns.lr, ns.batch, ns.device = 0.01, 32, Opaque()
    assert disabled(ns).config.as_dict() == {"lr": 0.01, "batch": 32, "device": "<opaque>"}


def test_init_with_a_dataclass_including_nested_dataclasses():
    """A dataclass (nested ones included) becomes a nested dict."""
    assert disabled(TrainConfig()).config.as_dict() == EXPECTED_DATACLASS


def test_init_with_a_plain_object_and_a_bad_type():
    """An object's attributes are accepted; a number is not (TypeError naming config)."""

    class Obj:
        def __init__(self):
            self.a = 1

    assert to_config(Obj()) == {"a": 1}
    with pytest.raises(TypeError, match="config must be"):
        to_config(5)


def test_item_and_attribute_access():
    """config[k], config.k, in, len, iteration, get; missing keys raise KeyError / AttributeError."""
    cfg = disabled({"lr": 0.1, "layers": [1, 2]}).config
    assert cfg["lr"] == 0.1 and cfg.lr == 0.1 and cfg.layers == [1, 2]
    assert "lr" in cfg and "nope" not in cfg and len(cfg) == 2 and list(cfg) == ["lr", "layers"]
    assert cfg.get("nope", 7) == 7 and cfg == {"lr": 0.1, "layers": [1, 2]}
    with pytest.raises(KeyError):
        cfg["nope"]
    with pytest.raises(AttributeError, match="nope"):
        cfg.nope


def test_updates_are_forwarded_as_control_ops_in_order():
    """update(), item and attribute assignment, setdefaults and del each send one control op with
    exactly the change (converted); an update without changes sends nothing."""
    run = offline_run()
    try:
        cfg = run.config
        cfg.update({"lr": 0.1}, epochs=3)
        cfg["path"] = Path("/p")
        cfg.batch = 16
        cfg.update(argparse.Namespace(seed=1))
        cfg.update(Optim())
        cfg.setdefaults({"lr": 9.9, "wd": 0.0})
        cfg.update({})
        del cfg["epochs"]
        control = [c for b in drain_batches(run) for c in b.control]
    finally:
        close(run)
    assert control == [
        ("config", {"lr": 0.1, "epochs": 3}),
        ("config", {"path": "/p"}),
        ("config", {"batch": 16}),
        ("config", {"seed": 1}),
        ("config", {"name": "adam", "betas": [0.9, 0.99]}),
        ("config", {"wd": 0.0}),
        ("config_del", ["epochs"]),
    ]
    assert cfg.as_dict() == {
        "lr": 0.1,
        "path": "/p",
        "batch": 16,
        "seed": 1,
        "name": "adam",
        "betas": [0.9, 0.99],
        "wd": 0.0,
    }


def test_config_is_a_copy_of_what_the_caller_passed():
    """Mutating the dict given to init() or update() afterwards does not change the config."""
    given = {"layers": [1, 2], "opt": {"lr": 0.1}}
    run = disabled(given)
    given["layers"].append(3)
    given["opt"]["lr"] = 5.0
    given["new"] = 1
    upd = {"sched": {"warmup": 10}}
    run.config.update(upd)
    upd["sched"]["warmup"] = 0
    assert run.config.as_dict() == {"layers": [1, 2], "opt": {"lr": 0.1}, "sched": {"warmup": 10}}


def test_module_level_config_follows_the_current_run():
    """rankwise.config is the current run's config; before init() it is wandb's placeholder: the name exists,
    using it raises rankwise.Error."""
    assert hasattr(rankwise, "config")
    with pytest.raises(rankwise.Error, match="init"):
        rankwise.config["a"]
    run = disabled({"a": 1})
    assert rankwise.config is run.config
    run.finish()


def test_config_survives_copy_without_recursion():
    """copy.copy / deepcopy of a Config work (no __getattr__ recursion on a half-built instance)."""
    cfg = Config(None, {"a": [1]})
    assert copy.deepcopy(cfg).as_dict() == {"a": [1]}
    assert copy.copy(cfg).a == [1]
