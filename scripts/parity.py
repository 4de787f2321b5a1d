#!/usr/bin/env python3
"""Checks that every public method of lobster_core::Host is offered by each
front end, or excluded with a reason, as docs/parity.json says.

    python scripts/parity.py            # with `lobster` importable (the bindings' venv)

Read from the code itself: the core's methods (`impl Host` in
lobster-core/src/host/mod.rs), the CLI's subcommands and global flags
(lobster-cli/src/args.rs), Python's `lobster.Host` and `lobster.RemoteHost`,
the C header's functions, the Go package's exported functions and methods,
the HTTP API's operationIds (docs/api/openapi.json). It fails, naming each
problem, when a core method is missing from the manifest (or the manifest
names one that is gone), when a front end has neither a name nor a reason
for a method, or when a name given does not exist in that front end.
Prints a table of what each front end offers.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRONTS = ["cli", "python", "remote", "c", "go", "http"]


def core_methods() -> list[str]:
    text = (REPO / "lobster-core/src/host/mod.rs").read_text()
    body = text[text.index("impl Host {"):]
    depth, end = 0, 0
    for i, ch in enumerate(body):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0 and ch == "}":
            end = i
            break
    return re.findall(r"^    pub (?:async )?fn (\w+)", body[:end], re.MULTILINE)


def cli_names() -> set[str]:
    text = (REPO / "lobster-cli/src/args.rs").read_text()
    enum = text[text.index("pub enum Command"):]
    enum = enum[: enum.index("\n}")]
    kebab = lambda name: re.sub(r"(?<!^)([A-Z])", r"-\1", name).lower()  # noqa: E731
    commands = {kebab(n) for n in re.findall(r"^    ([A-Z]\w*)\s*[({,]", enum, re.MULTILINE)}
    flags = {f"--{n.replace('_', '-')}" for n in re.findall(r"global = true[^\n]*\n(?:\s*///[^\n]*\n)*\s*pub (\w+):", text)}
    return commands | flags


def python_names(remote: bool) -> set[str]:
    import lobster

    cls = lobster.RemoteHost if remote else lobster.Host
    return {n for n in dir(cls) if not n.startswith("_")} | {n for n in dir(lobster) if not n.startswith("_")}


def c_names() -> set[str]:
    return set(re.findall(r"\b(lobster_\w+)\s*\(", (REPO / "lobster-capi/include/lobster.h").read_text()))


def go_names() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "lobster-capi/go").glob("*.go"):
        if not path.name.endswith("_test.go"):
            names |= set(re.findall(r"^func (?:\(\w+ \*?\w+\) )?([A-Z]\w*)\(", path.read_text(), re.MULTILINE))
    return names


def http_names() -> set[str]:
    doc = json.loads((REPO / "docs/api/openapi.json").read_text())
    return {op["operationId"] for item in doc["paths"].values() for op in item.values() if isinstance(op, dict) and "operationId" in op}


def main() -> int:
    manifest = json.loads((REPO / "docs/parity.json").read_text())["operations"]
    exported = {
        "cli": cli_names(),
        "python": python_names(remote=False),
        "remote": python_names(remote=True),
        "c": c_names(),
        "go": go_names(),
        "http": http_names(),
    }
    problems: list[str] = []
    methods = core_methods()
    for method in methods:
        if method not in manifest:
            problems.append(f"core method `Host::{method}` is in no front end: add it to docs/parity.json (a name per front end, or a reason)")
    for method in manifest:
        if method not in methods:
            problems.append(f"docs/parity.json names `Host::{method}`, which the core no longer has")
    rows = []
    for method in methods:
        entry = manifest.get(method, {})
        excluded = entry.get("excluded", {})
        row = [method]
        for front in FRONTS:
            name = entry.get(front)
            reason = excluded.get(front) or excluded.get("*")
            if name:
                first = name.split()[0]
                if first not in exported[front]:
                    problems.append(f"{method}: {front} has no `{first}`")
                row.append(name)
            elif reason:
                row.append("-")
            else:
                problems.append(f"{method}: {front} offers it under no name and no reason excludes it")
                row.append("?")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [["core"] + FRONTS]) for i in range(len(FRONTS) + 1)]
    for row in [["core"] + FRONTS] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    offered = {f: sum(1 for m in methods if manifest.get(m, {}).get(f)) for f in FRONTS}
    print("offered: " + ", ".join(f"{f} {n}/{len(methods)}" for f, n in offered.items()))
    for problem in problems:
        print(f"parity: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
