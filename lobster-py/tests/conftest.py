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


@pytest.fixture
def imaged_host(tmp_path: Path) -> TempHost:
    """A temporary host whose guest images exist (empty files): a spawn gets
    past its image check to the checks that follow."""
    host = TempHost(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    paths = {"state_dir": "state"}
    for what in ("kernel", "initrd", "rootfs"):
        (images / what).write_bytes(b"")
        paths[what] = str(images / what)
    host.write_config({"domain": "test.lobster", "paths": paths})
    return host
