"""A temporary lobster host for tests, benches and examples: a config.json
with its state dir beside it, and a registry seeder.

Python has no API to allocate tenants (spawn comes with the VM path), so
`TempHost.seed` writes `registry.json` in the core's schema (version 1)
directly, the way the registry holds tenants after spawns. Usable without
pytest: `python fixtures.py DIR NAME...` writes DIR/config.json and seeds it.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

POOL = ipaddress.IPv4Address("10.200.0.0")


def tenant_record(name: str, slot: int, status: str = "running") -> dict:
    """A registry record as the core writes it for `name` in `slot`."""
    subnet = POOL + 4 * slot
    guest = subnet + 2
    tenant_id = f"{slot:08x}"
    return {
        "name": name,
        "id": tenant_id,
        "status": status,
        "resources": {"vcpus": 2, "memory_mib": 1024, "overlay_size_mib": 4096, "backend": None},
        "allocation": {
            "slot": slot,
            "subnet": str(subnet),
            "host_ip": str(subnet + 1),
            "guest_ip": str(guest),
            "mac": "06:00:" + ":".join(f"{b:02x}" for b in guest.packed),
            "tap": f"lob-{tenant_id}",
            "host_port": 20000 + slot,
            "jail_uid": 10000 + slot,
        },
        "created_at": 1_700_000_000 + slot,
        "agent_token": f"agent-token-{name}",
        "gateway_token": f"gateway-token-{name}",
    }


@dataclass
class TempHost:
    """A host rooted in a temporary directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def registry(self) -> Path:
        return self.state_dir / "registry.json"

    def write_config(self, document: dict) -> Path:
        self.config.write_text(json.dumps(document))
        return self.config

    def seed(self, names: list[str], status: str = "running") -> None:
        """Writes a registry holding one tenant per name, all in `status`."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tenants = {name: tenant_record(name, slot, status) for slot, name in enumerate(names)}
        self.registry.write_text(json.dumps({"schema_version": 1, "tenants": tenants}))

    def write_watch(self, pid: int, tenants: dict[str, dict]) -> None:
        """Writes `watch.json` as a watchdog with `pid` would, holding
        `tenants` (name -> the watchdog's entry: state, attempts, checks...)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        status = {
            "pid": pid,
            "started_ms": 1_700_000_000_000,
            "updated_ms": 1_700_000_060_000,
            "tick": 12,
            "interval_ms": 5000,
            "tenants": tenants,
        }
        (self.state_dir / "watch.json").write_text(json.dumps(status))


if __name__ == "__main__":
    import sys

    target = TempHost(Path(sys.argv[1]))
    target.root.mkdir(parents=True, exist_ok=True)
    target.write_config({"domain": "test.lobster", "paths": {"state_dir": "state"}})
    target.seed(sys.argv[2:])
    print(target.config)
