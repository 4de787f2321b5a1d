"""pytest fixtures: a temporary host per test (see fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures import TempHost


@pytest.fixture
def temp_host(tmp_path: Path) -> TempHost:
    """A temporary host with a valid config (state dir relative to it), no tenants."""
    host = TempHost(tmp_path)
    host.write_config({"domain": "test.lobster", "paths": {"state_dir": "state"}})
    return host
