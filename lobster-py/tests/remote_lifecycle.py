"""The T2 lifecycle through `lobster.connect` (run by lobster-cli's
tests/t2_api.rs against `lobsterd serve` with real guests):

    python remote_lifecycle.py URL TOKEN spawn NAME   # spawn, read back
    python remote_lifecycle.py URL TOKEN rest NAME    # suspend, resume, molt, evict

Each phase asserts what it sees and prints one JSON line of what it did;
the Rust test checks the guest from outside between the phases. The same
script would run against a local `lobster.Host`: only the opening line
differs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import lobster

SERVER = ["/bin/sh", "-c",
          "mkdir -p /tmp/w; echo hello from python > /tmp/w/index.html; exec busybox httpd -f -p 9000 -h /tmp/w"]


def spawn(host: lobster.RemoteHost, name: str) -> dict[str, object]:
    started = time.monotonic()
    tenant = host.spawn(lobster.TenantSpec(name, vcpus=1, memory_mib=256, command=SERVER, env={"MODE": "t2"}))
    took = time.monotonic() - started
    assert tenant.status == "running", tenant
    assert tenant.vm_pid is not None, tenant
    assert host.get(name) == tenant
    assert name in [t.name for t in host.list()]
    assert len(host.token(name)) >= 32
    again = asyncio.run(host.get_async(name))
    assert again == tenant
    try:
        host.spawn(lobster.TenantSpec(name, command=SERVER))
    except lobster.AlreadyExistsError:
        pass
    else:
        raise AssertionError("a second spawn of the same name succeeded")
    return {"spawn_s": round(took, 1), "route": tenant.route, "status": tenant.status}


def rest(host: lobster.RemoteHost, name: str) -> dict[str, object]:
    assert host.suspend(name).status == "suspended"
    resumed = host.resume(name)
    assert resumed.status == "running", resumed
    [report] = host.molt(name)
    assert report["tenant"] == name and report["healthy"], report
    asyncio.run(host.evict_async(name))
    assert name not in [t.name for t in host.list()]
    try:
        host.get(name)
    except lobster.NotFoundError:
        pass
    else:
        raise AssertionError("an evicted tenant is still found")
    return {"suspended_and_resumed": True, "healthy": report["healthy"], "evicted": True}


if __name__ == "__main__":
    url, token, phase, tenant = sys.argv[1:5]
    remote = lobster.connect(url, token, timeout=300)
    print(json.dumps({"spawn": spawn, "rest": rest}[phase](remote, tenant)))
