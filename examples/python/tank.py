"""Print a host's health overview once, the way `lobsterd tank` shows it.

Usage: python tank.py [CONFIG]   (default: $LOBSTERD_CONFIG, then
/etc/lobsterd/config.json). Needs the package: pip install ./lobster-py
"""

from __future__ import annotations

import sys

import lobster
from lobster.health import Overview, TenantOverview


def row(t: TenantOverview) -> str:
    state = t["state"] or "-"
    memory = f"{t['memory_used_mib']}/{t['memory_mib']}" if t["memory_used_mib"] is not None else f"-/{t['memory_mib']}"
    return f"  {t['name']:<20} {t['status']:<10} {state:<11} {t['ip']:<15} {memory:>11} MiB  {t['health']}"


def main() -> int:
    config = sys.argv[1] if len(sys.argv) > 1 else None
    try:
        overview: Overview = lobster.Host(config).overview()
    except lobster.LobsterError as e:
        print(f"error ({e.kind}): {e}", file=sys.stderr)
        return 1
    watchdog = overview["watchdog"]
    if watchdog is None:
        print("no watchdog has run on this host")
    else:
        print(f"watchdog pid {watchdog['pid']} ({'alive' if watchdog['alive'] else 'gone'}), tick {watchdog['tick']}")
    for t in overview["tenants"]:
        print(row(t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
