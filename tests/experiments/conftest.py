"""Fixtures of the experiments tests."""

from __future__ import annotations

import pytest

from liftstack_experiments.settings import ExperimentsSettings
from liftstack_shared.settings import CommonSettings
from tests.experiments.parts import as_experiments


@pytest.fixture
def experiments_settings(kafka_topics: CommonSettings) -> ExperimentsSettings:
    return as_experiments(kafka_topics)
