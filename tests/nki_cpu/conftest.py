"""The `nki` shim is installed once for every nki_cpu test; `rng` gives reproducible inputs."""

import numpy as np
import pytest

import nki_cpu

nki_cpu.install()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def replay_checked():
    """Every launch whose recording is kept runs again as a replay, which must match it bit for bit."""
    from replay_check import checked_launches

    nki_cpu.replay.clear()
    with checked_launches() as tally:
        yield tally


def pytest_terminal_summary(terminalreporter):
    from replay_check import summary

    terminalreporter.write_line(summary())
