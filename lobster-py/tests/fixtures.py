"""A temporary lobster host for tests, benches and examples: a config.json
with its state dir beside it, and a registry seeder.

Python has no API to allocate tenants (spawn comes with the VM path), so
`TempHost.seed` has the `lobster-testkit seed` command allocate them through
lobster-core's real allocator, the way spawn's first step does. The command
is `$LOBSTER_TESTKIT`, else built with cargo. Usable without pytest:
`python fixtures.py DIR NAME...` writes DIR/config.json and seeds it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def executable(package: str, binary: str, variable: str) -> str:
    """A command of the workspace: `$<variable>`, else built here with cargo."""
    if path := os.environ.get(variable):
        return path
    build = subprocess.run(
        ["cargo", "build", "--quiet", "--locked", "-p", package, "--bin", binary,
         "--message-format=json"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    if build.returncode != 0:
        raise RuntimeError(f"building {binary} failed:\n{build.stderr}")
    for line in build.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            return str(message["executable"])
    raise RuntimeError(f"cargo built no {binary} executable")


def testkit() -> str:
    """The `lobster-testkit` command: `$LOBSTER_TESTKIT`, else built here."""
    return executable("lobster-testkit", "lobster-testkit", "LOBSTER_TESTKIT")


def lobsterd() -> str:
    """The `lobsterd` command: `$LOBSTERD`, else built here."""
    return executable("lobster-cli", "lobsterd", "LOBSTERD")


@dataclass
class Served:
    """A `lobsterd serve` of a TempHost: its URL and a token per scope."""

    url: str
    tokens: dict[str, str]


@dataclass
class TempHost:
    """A host rooted in a temporary directory."""

    root: Path
    records: dict[str, dict] = field(default_factory=dict)
    """The seeded tenants' registry records, by name."""

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
        """Allocates one tenant per name (in order: the first gets slot 0), all
        in `status`, and keeps their records in `records`."""
        seeded = subprocess.run(
            [testkit(), "seed", str(self.config), "--status", status, *names],
            capture_output=True, text=True, check=False,
        )
        if seeded.returncode != 0:
            raise RuntimeError(f"lobster-testkit seed failed: {seeded.stderr}")
        self.records.update((r["name"], r) for r in json.loads(seeded.stdout))

    def lobsterd(self, *args: str) -> str:
        """Runs `lobsterd --config <config> ARGS`; its standard output."""
        done = subprocess.run(
            [lobsterd(), "--config", str(self.config), *args],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"lobsterd {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    @contextlib.contextmanager
    def serve(self) -> Iterator[Served]:
        """Runs `lobsterd serve` on a socket beside the config, with one API
        token per scope, until the block ends (then SIGTERM, and waits)."""
        tokens = {
            scope: json.loads(self.lobsterd("--json", "api-token", "create", scope, "--scope", scope))["secret"]
            for scope in ("read", "operate", "admin")
        }
        socket_path = self.root / "run" / "api.sock"
        log = self.root / "serve.log"
        with log.open("wb") as stderr:
            server = subprocess.Popen(
                [lobsterd(), "--config", str(self.config), "serve", "--socket", str(socket_path)],
                stdout=subprocess.DEVNULL, stderr=stderr,
            )
        try:
            deadline = time.monotonic() + 20
            while not socket_path.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"lobsterd serve did not start: {log.read_text()}")
                time.sleep(0.02)
            yield Served(url=f"unix:{socket_path}", tokens=tokens)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

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
