"""``make test-fast`` runs ``pytest -m "not broker and not slow"``, which must start no
broker: tests/conftest.py marks ``broker`` every test that asks for one through a
fixture (so that selection leaves it out), and fails an unmarked test that starts one
by hand. Checked on a small suite of its own, selected as make test-fast selects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SUITE = """
import pytest

from tests.support.brokers import new_local_broker


@pytest.fixture
def through_another(kafka_bootstrap):
    return kafka_bootstrap


def test_asks_for_the_sessions_broker(kafka_bootstrap):
    raise AssertionError("selected")


def test_asks_through_another_fixture(through_another):
    raise AssertionError("selected")


def test_asks_for_the_modules_broker(bootstrap, state):
    raise AssertionError("selected")


def test_starts_one_by_hand(tmp_path):
    node = new_local_broker(tmp_path)
    try:
        node.start()
    finally:
        node.stop()


def test_needs_none():
    pass
"""


def test_the_fast_selection_starts_no_broker(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(SUITE)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "-p", "tests.conftest",
         "-p", "no:cacheprovider", "-m", "not broker and not slow", "-q", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.stdout.splitlines()[-1].startswith("1 failed, 1 passed, 3 deselected"), done.stdout
    assert "test_starts_one_by_hand starts a broker but is not marked broker" in done.stdout
