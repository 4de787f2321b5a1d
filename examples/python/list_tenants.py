"""List the tenants of a lobster host, blocking and then with asyncio.

Usage: python list_tenants.py [CONFIG]   (default: $LOBSTERD_CONFIG, then
/etc/lobsterd/config.json). Needs the package: pip install ./lobster-py
"""

from __future__ import annotations

import asyncio
import sys

import lobster


def main() -> int:
    config = sys.argv[1] if len(sys.argv) > 1 else None
    try:
        host = lobster.Host(config)
        tenants = host.list()
    except lobster.LobsterError as e:  # one except for every lobster failure
        print(f"error ({e.kind}): {e}", file=sys.stderr)
        return 1
    print(f"{len(tenants)} tenant(s) on {host.config_path}")
    for t in tenants:
        print(f"  {t.name:<20} {t.status:<10} {t.guest_ip:<15} {t.route}")

    async def count() -> int:
        return len(await host.list_async())

    assert asyncio.run(count()) == len(tenants)

    try:
        host.get("no-such-tenant")
    except LookupError as e:  # NotFoundError is also a LookupError
        print(f"lookup failed as expected: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
