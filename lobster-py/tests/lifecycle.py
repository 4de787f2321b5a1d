"""A tenant's life through the Python package, the same script for a local
`lobster.Host` and for `lobster.connect` (run by lobster-cli's
tests/t2_api.rs with real guests):

    python lifecycle.py local CONFIG spawn|rest NAME
    python lifecycle.py remote URL TOKEN spawn|rest NAME

`spawn` spawns with a secret and a command of its own (its progress
reported to a callback), reads the tenant back and follows its log until
the workload's line appears; `rest` suspends and resumes (with progress),
rotates the tokens, molts, tails the log, snaps into a local file, evicts.
Each phase asserts what it sees and prints one JSON line; the Rust test
checks the guest from outside between the phases. Only the opening line
differs between local and remote: that is the point.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Union

import lobster
from lobster.health import ProgressEvent

AnyHost = Union[lobster.Host, lobster.RemoteHost]

# Serves a page, then writes a line a second; the secret shows only by length.
SERVER = ["/bin/sh", "-c",
          "mkdir -p /tmp/w; echo hello from python > /tmp/w/index.html; busybox httpd -p 9000 -h /tmp/w; "
          "while true; do echo \"tick secret-len ${#API_KEY}\"; sleep 1; done"]


def spawn(host: AnyHost, name: str) -> dict[str, object]:
    started = time.monotonic()
    spec = lobster.TenantSpec(name, vcpus=1, memory_mib=256, command=SERVER, secrets={"API_KEY": "s3cret"})
    events: list[ProgressEvent] = []
    tenant = host.spawn(spec, progress=events.append)
    took = time.monotonic() - started
    done = [e["step"] for e in events if e["phase"]["phase"] == "done"]
    assert {"allocate", "vm", "agent", "workload", "route"} <= set(done), events
    assert all(e["operation"] == "spawn" and e["tenant"] == name for e in events), events
    assert tenant.status == "running" and tenant.vm_pid is not None, tenant
    assert host.get(name) == tenant
    assert name in [t.name for t in host.list()]
    assert len(host.token(name)) >= 32
    async def again() -> lobster.Tenant:
        return await host.get_async(name)

    assert asyncio.run(again()) == tenant
    try:
        host.spawn(lobster.TenantSpec(name, command=SERVER))
    except lobster.AlreadyExistsError:
        pass
    else:
        raise AssertionError("a second spawn of the same name succeeded")
    with host.follow_logs(name, lines=5) as stream:
        line = next(line for line in stream if "tick" in line)
    assert line.endswith("secret-len 6"), line
    assert "s3cret" not in json.dumps(tenant.to_dict())
    return {"spawn_s": round(took, 1), "status": tenant.status, "followed": line}


def rest(host: AnyHost, name: str) -> dict[str, object]:
    steps: list[str] = []
    assert host.suspend(name, progress=lambda e: steps.append(e["step"])).status == "suspended"

    async def resume() -> lobster.Tenant:
        return await host.resume_async(name, progress=lambda e: steps.append(e["step"]))

    assert asyncio.run(resume()).status == "running"
    assert steps, "suspend and resume reported no progress"
    before = host.token(name)
    assert host.rotate_tokens(name).name == name
    assert host.token(name) != before, "the gateway token did not change"
    [report] = host.molt(name)
    assert report["tenant"] == name and report["healthy"], report
    assert any("tick" in line for line in host.logs(name, lines=20))

    async def tail() -> list[str]:
        return await host.logs_async(name, source="agent", lines=5)

    assert asyncio.run(tail()), "the agent's log is empty"
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / f"{name}.ext4.zst"
        snapped = host.snap(name, archive)
        data = archive.read_bytes()
        assert data[:4] == b"\x28\xb5\x2f\xfd", "not a zstd stream"
        assert len(data) == snapped["archive_bytes"] and snapped["path"] == str(archive), snapped
    async def evict() -> None:
        await host.evict_async(name)

    asyncio.run(evict())
    assert name not in [t.name for t in host.list()]
    try:
        host.get(name)
    except lobster.NotFoundError:
        pass
    else:
        raise AssertionError("an evicted tenant is still found")
    return {"archive_bytes": snapped["archive_bytes"], "evicted": True}


if __name__ == "__main__":
    if sys.argv[1] == "local":
        host: AnyHost = lobster.Host(sys.argv[2])
        phase, tenant = sys.argv[3:5]
    else:
        host = lobster.connect(sys.argv[2], sys.argv[3], timeout=300)
        phase, tenant = sys.argv[4:6]
    print(json.dumps({"spawn": spawn, "rest": rest}[phase](host, tenant)))
