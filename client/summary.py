"""``run.summary``: one value per key, kept by the writer's assembler.

By default the summary of a key is its last logged value (the value at its
highest step); ``define_metric`` changes that (min, max, mean, first, several
at once, or none) for the values logged after it (the rules: ``client.summarizer``). A key set by
hand (``run.summary[k] = v``) is never overwritten by ``log()`` again, as in
wandb. Reads see everything logged before them: they fold pending ops into the
assembler first (the only time the training thread does that work).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from client.errors import ConfigError
from client.values import MAX_VALUE_BYTES, check_key, check_size, normalize_value

if TYPE_CHECKING:
    from client.run import Run


class Summary(MutableMapping):
    """Dict-like view of a run's summary."""

    def __init__(self, run: Run):
        self._run = run

    def _view(self) -> dict[str, Any]:
        writer = self._run._writer
        if writer is None:
            return {}
        writer.sync()
        with writer.lock:
            return dict(writer.assembler.summary)

    def __getitem__(self, key: str) -> Any:
        return self._view()[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"summary has no key {key!r}") from None

    def __setitem__(self, key: str, value: Any) -> None:
        check_key(key)
        if isinstance(value, Mapping):
            value = {str(k): normalize_value(f"{key}.{k}", v) for k, v in value.items()}
            check_size(key, list(value.values()), "run.summary")
        else:
            value = normalize_value(key, value)
            check_size(key, value, "run.summary")
        self._run._control("summary_set", (key, value))

    def __delitem__(self, key: str) -> None:
        if key not in self._view():
            raise KeyError(key)
        self._run._control("summary_del", key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._view())

    def __len__(self) -> int:
        return len(self._view())

    def __repr__(self) -> str:
        return f"Summary({self._view()!r})"


class Config(MutableMapping):
    """``run.config``: the run's hyper-parameters. Sent at init and on every change."""

    def __init__(self, run: Run | None, initial: Mapping[str, Any] | None = None):
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_data", dict(to_config(initial) if initial is not None else {}))
        check_config(self._data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        if self._run is not None:
            self._run._control("config_del", [key])

    def __getattr__(self, key: str) -> Any:
        # copy/pickle look up dunders on an instance whose _data is not set yet: no recursion
        data = self.__dict__.get("_data")
        if data is None or key.startswith("__"):
            raise AttributeError(key)
        try:
            return data[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def update(self, other: Any = None, allow_val_change: bool | None = None, **kwargs: Any) -> None:  # type: ignore[override]
        changes = dict(to_config(other)) if other is not None else {}
        changes.update(to_config(kwargs))
        if not changes:
            return
        check_config(changes)
        self._data.update(changes)
        if self._run is not None:
            self._run._control("config", changes)

    def setdefaults(self, d: Mapping[str, Any]) -> None:
        self.update({k: v for k, v in to_config(d).items() if k not in self._data})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


def to_config(obj: Any) -> dict[str, Any]:
    """Accept a mapping, an argparse Namespace, a dataclass or an object with attributes."""
    if obj is None:
        return {}
    if isinstance(obj, Config):
        return obj.as_dict()
    if isinstance(obj, Mapping):
        items = obj.items()
    elif hasattr(obj, "_get_kwargs"):  # argparse.Namespace
        items = obj._get_kwargs()
    elif hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        items = dataclasses.asdict(obj).items()
    elif hasattr(obj, "__dict__"):
        items = vars(obj).items()
    else:
        raise TypeError(f"config must be a dict, argparse.Namespace or dataclass, not {type(obj).__name__}")
    return {str(k): _config_value(v) for k, v in items}


def _config_value(value: Any) -> Any:
    """Config is descriptive: anything that is not plain data is kept as its string form."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _config_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_config_value(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return str(value)


def check_config(changes: dict[str, Any]) -> None:
    """A config change travels in one frame (at init, in the HELLO): it must encode (msgpack: text without
    lone surrogates, integers within 64 bits) and stay under ``MAX_VALUE_BYTES``; checked here, at the call,
    so that the I/O thread never meets a config it cannot send."""
    if not changes:
        return
    import msgpack

    from client.columns import to_wire  # what the I/O thread will do to it (ints beyond int64 raise)

    try:
        size = len(msgpack.packb(to_wire(changes), use_bin_type=True))
    except (OverflowError, ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
        bad = next((k for k, v in changes.items() if not _packs({k: v})), "?")
        raise ConfigError(f"config: key {bad!r} cannot be stored ({type(exc).__name__}: {exc})") from None
    if size > MAX_VALUE_BYTES:
        big = max(changes, key=lambda k: len(msgpack.packb({k: changes[k]}, use_bin_type=True)))
        raise ConfigError(
            f"config: the update is about {size >> 20} MiB (largest key {big!r}), above the limit of "
            f"{MAX_VALUE_BYTES >> 20} MiB per config change; keep large data out of the config"
        )


def _packs(value: Any) -> bool:
    import msgpack

    from client.columns import to_wire

    try:
        msgpack.packb(to_wire(value), use_bin_type=True)
        return True
    except (OverflowError, ValueError, TypeError):
        return False
