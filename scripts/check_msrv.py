#!/usr/bin/env python3
"""Checks that Cargo.toml's `rust-version` is not lower than any locked dependency's.

A declared minimum Rust version is a promise: `cargo build` on that toolchain
works. It cannot hold if a dependency locked in Cargo.lock declares a higher
`rust-version` itself. This script reads the resolved graph from
`cargo metadata --locked` (every feature of this crate, every target
platform), walks the dependencies of the library and binary build from the
root package (normal and build dependencies, transitively; this crate's
dev-dependencies are left out, since users never build them), and fails if
any reached package declares a higher `rust-version` than ours. (cargo
metadata's graph unifies features with the dev-dependencies', so an optional
dependency enabled only by them may be counted too: the check errs on the
strict side.)

No toolchain is downloaded and nothing is compiled, so it runs anywhere
`cargo` and Python 3 do:

    python3 scripts/check_msrv.py            # exit 0 if the claim holds, 1 if not
    python3 scripts/check_msrv.py --top 20   # also list the 20 highest requirements

Exit codes: 0 the declared version covers every dependency, 1 it does not
(the offending packages are listed), 2 the check could not run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
from typing import Optional

ROOT = pathlib.Path(__file__).resolve().parent.parent


def parse_version(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    """`1.88` or `1.94.1` as (1, 88, 0) or (1, 94, 1); None for no claim."""
    if not text:
        return None
    parts = text.strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a rust-version: {text!r}")
    numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
    return (numbers[0], numbers[1], numbers[2])


def show(version: tuple[int, int, int]) -> str:
    return ".".join(str(n) for n in version)


def metadata(manifest: pathlib.Path) -> dict:
    command = [
        "cargo",
        "metadata",
        "--format-version",
        "1",
        "--locked",
        "--all-features",
        "--manifest-path",
        str(manifest),
    ]
    try:
        out = subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        stderr = getattr(err, "stderr", "") or ""
        sys.stderr.write(f"error: {' '.join(command)} failed: {err}\n{stderr}")
        sys.exit(2)
    return json.loads(out.stdout)


def library_dependencies(meta: dict) -> tuple[dict, list[dict]]:
    """The root package and every package its build needs."""
    packages = {p["id"]: p for p in meta["packages"]}
    resolve = meta.get("resolve") or {}
    root_id = resolve.get("root")
    if root_id is None:
        sys.stderr.write("error: cargo metadata names no root package\n")
        sys.exit(2)
    nodes = {node["id"]: node for node in resolve.get("nodes", [])}

    seen: set[str] = set()
    stack = [root_id]
    while stack:
        node = nodes[stack.pop()]
        for dep in node.get("deps", []):
            kinds = {k.get("kind") for k in dep.get("dep_kinds", [])}
            # kind None is a normal dependency, "build" a build dependency;
            # "dev" ones are only for this package's tests, examples and
            # benches (and appear only on the root node).
            if not kinds & {None, "build"}:
                continue
            if dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
    seen.discard(root_id)
    return packages[root_id], [packages[pid] for pid in sorted(seen) if pid in packages]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--manifest-path",
        type=pathlib.Path,
        default=ROOT / "Cargo.toml",
        help="the crate to check (default: this repository's Cargo.toml)",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=5,
        help="how many of the highest requirements to list (default 5)",
    )
    args = parser.parse_args()

    meta = metadata(args.manifest_path)
    root, dependencies = library_dependencies(meta)
    try:
        declared = parse_version(root.get("rust_version"))
    except ValueError as err:
        sys.stderr.write(f"error: {root['name']}: {err}\n")
        return 2
    if declared is None:
        sys.stderr.write(f"error: {root['name']} declares no rust-version\n")
        return 1

    requirements = []
    for package in dependencies:
        try:
            version = parse_version(package.get("rust_version"))
        except ValueError as err:
            sys.stderr.write(f"warning: {package['name']} {package['version']}: {err}\n")
            continue
        if version is not None:
            requirements.append((version, package["name"], package["version"]))
    # Highest requirement first, then by name.
    requirements.sort(key=lambda r: (tuple(-n for n in r[0]), r[1]))

    print(
        f"{root['name']} {root['version']} declares rust-version {show(declared)}; "
        f"{len(dependencies)} locked dependencies of the library build, "
        f"{len(requirements)} of them declare one"
    )
    for version, name, pkg_version in requirements[: max(args.top, 0)]:
        print(f"  {show(version):>8}  {name} {pkg_version}")

    too_new = [r for r in requirements if r[0] > declared]
    if too_new:
        highest = requirements[0]
        print(
            f"error: rust-version {show(declared)} is lower than what "
            f"{len(too_new)} locked dependencies need; the minimum is "
            f"{show(highest[0])} ({highest[1]} {highest[2]}):",
            file=sys.stderr,
        )
        for version, name, pkg_version in too_new:
            print(f"  {name} {pkg_version} needs {show(version)}", file=sys.stderr)
        return 1
    if requirements and requirements[0][0] < declared:
        print(
            f"note: the locked dependencies need only {show(requirements[0][0])} "
            f"({requirements[0][1]} {requirements[0][2]}); rust-version could be lower"
        )
    print("ok: the declared rust-version covers every locked dependency")
    return 0


if __name__ == "__main__":
    sys.exit(main())
