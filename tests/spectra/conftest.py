"""Fixtures for the spectra tests."""

from __future__ import annotations

import pytest
from spectra_helpers import planted_spikes


@pytest.fixture(scope="module")
def spiked():
    return planted_spikes()
