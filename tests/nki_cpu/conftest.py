"""The `nki` shim is installed once for every nki_cpu test; `rng` gives reproducible inputs."""

import numpy as np
import pytest

import nki_cpu

nki_cpu.install()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
