"""Fixtures of the fault-injection suite (see ``safety_harness.py``): one fork server and the clean runs, shared."""

from pathlib import Path

import pytest
from safety_harness import THREE, CleanRuns, ForkServer, make_inputs


@pytest.fixture(scope="session")
def rnr(tmp_path_factory):
    server = ForkServer(tmp_path_factory.mktemp("fork-server"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def clean(tmp_path_factory) -> CleanRuns:
    return CleanRuns(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="session")
def three(tmp_path_factory) -> Path:
    """Three 160x160 inputs, written once; tests copy them to ``<tmp>/in``."""
    return make_inputs(tmp_path_factory.mktemp("three") / "in", THREE)
