"""The log check of tests/fixtures/secrets.py fails a test whose setup, call or
teardown logged a watched secret (message or traceback), and only then. (It once read
`caplog.text`, which at teardown holds teardown's records alone, and never fired.)"""

from __future__ import annotations

import pytest

LEAKY_TESTS = """
import logging

import pytest

KEY = "0123456789abcdef" * 2
log = logging.getLogger("liftstack.iterable")


@pytest.fixture(autouse=True)
def watched(no_secrets_in_logs, caplog):
    caplog.set_level(logging.DEBUG)
    no_secrets_in_logs.add(KEY)


@pytest.fixture
def leaky_setup():
    log.debug("setup with %s", KEY)


@pytest.fixture
def leaky_teardown():
    yield
    log.info("teardown with %s", KEY)


def test_leak_in_call():
    log.warning("calling with %s", KEY)


def test_leak_in_a_traceback():
    try:
        raise RuntimeError("bad key " + KEY)
    except RuntimeError:
        log.exception("failed")


def test_leak_in_setup(leaky_setup):
    pass


def test_leak_in_teardown(leaky_teardown):
    pass


def test_clean():
    log.warning("nothing secret here")
"""


def test_a_leak_in_any_phase_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest("-p", "tests.fixtures.secrets", "-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=5, errors=4)
    errored = {line.split("::")[1].split()[0] for line in result.outlines if line.startswith("ERROR test_leaky.py::")}
    assert errored == {"test_leak_in_call", "test_leak_in_a_traceback", "test_leak_in_setup", "test_leak_in_teardown"}
    assert "leaked into the logs" in result.stdout.str()
