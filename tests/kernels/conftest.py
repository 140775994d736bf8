"""Kernel variants through the interpreter: every launch whose recording is kept is checked against its replay."""

import pytest


@pytest.fixture(autouse=True)
def replay_checked():
    from nki_cpu import replay
    from tests.nki_cpu.replay_check import checked_launches

    replay.clear()
    with checked_launches() as tally:
        yield tally


def pytest_terminal_summary(terminalreporter):
    from tests.nki_cpu.replay_check import summary

    terminalreporter.write_line(summary())
