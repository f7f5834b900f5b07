"""The rankwise package's errors (``rankwise/errors.py``): one module, every class a ``rankwise.Error``, the
exported ones named ``rankwise.X`` and picklable; ``Api`` raises NotFound only for what is missing and keeps
the cause; ``rankwise.plot`` rejects bad arguments with an error that is both ``rankwise.Error`` and
``ValueError``."""

from __future__ import annotations

import pickle

import pytest

import rankwise
from rankwise import errors


def test_every_error_is_a_rankwise_error_and_keeps_its_builtin_base():
    """NotFound and its kinds stay LookupErrors, the argument errors ValueErrors; wandb's names are the same
    classes under ``rankwise.wandb_compat.errors``."""
    from rankwise.wandb_compat import errors as wandb_errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), rankwise.Error), name
    assert issubclass(errors.StoreMissing, errors.NotFound) and issubclass(errors.ArtifactNotFound, LookupError)
    assert issubclass(errors.InvalidArgumentError, ValueError)
    assert wandb_errors.CommError is errors.CommError and rankwise.errors is errors


def test_exported_classes_are_named_and_pickled_as_rankwise():
    """``rankwise.UsageError`` prints as such (not ``client.errors.UsageError``) and round-trips through
    pickle, as do an ApiError's status and a lazily loaded class (``rankwise.Image``)."""
    exc = pickle.loads(pickle.dumps(rankwise.UsageError("x")))
    assert type(exc) is rankwise.UsageError and str(exc) == "x"
    assert repr(rankwise.UsageError) == "<class 'rankwise.UsageError'>"
    assert pickle.loads(pickle.dumps(rankwise.Image)) is rankwise.Image and rankwise.Image.__module__ == "rankwise"
    api_error = pickle.loads(pickle.dumps(errors.ApiError(404, "no such group")))
    assert (api_error.status, api_error.message) == (404, "no such group")


def test_missing_store_is_not_found_with_its_cause(tmp_path):
    """No store at the path: NotFound whose cause is the reader's error (it used to be dropped)."""
    with pytest.raises(errors.NotFound, match="no store at") as info:
        rankwise.Api(tmp_path / "absent.sqlite")
    assert isinstance(info.value.__cause__, rankwise.Error)


def test_plot_argument_errors_are_rankwise_errors():
    """A bad argument to ``rankwise.plot`` is caught by ``except rankwise.Error`` and by ``except ValueError``,
    with the message naming the argument."""
    for bad in (lambda: rankwise.plot.line_series([1, 2], []), lambda: rankwise.plots.heatmap(["a"], ["b"], "x")):
        with pytest.raises(rankwise.InvalidArgumentError) as info:
            bad()
        assert isinstance(info.value, ValueError) and isinstance(info.value, rankwise.Error)
