"""Fixtures several UI test modules had word for word: ``server``, a ``rankwise ui`` server over the module's
own ``store`` fixture for the whole module (support/uihelp.py ``served``), and ``page``, a 1400×1000 page of
the shared headless Chromium (the ``browser`` fixture of tests/conftest.py) whose uncaught errors and console
errors collect in ``page.errors`` (a test asserts it stays empty). A module that needs something else (a
server over another fixture, another viewport, a page already opened) defines its own, which wins."""

from __future__ import annotations

import pytest

from support.uihelp import served, watch_errors


@pytest.fixture(scope="module")
def server(store):
    with served(store) as s:
        yield s


@pytest.fixture
def page(browser):
    p = browser.new_page(viewport={"width": 1400, "height": 1000})
    p.errors = watch_errors(p)
    yield p
    p.close()
