"""Checks the declared rust-version (MSRV) against every dependency built on
this platform: none may need a newer Rust than aloop says it builds with.
(This machine has one toolchain, so the MSRV cannot be built here; clippy's
incompatible_msrv lint covers aloop's own use of newer std APIs.)"""
import json
import subprocess
import sys

host = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
triple = next(line.split(": ", 1)[1] for line in host.splitlines() if line.startswith("host: "))
meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", triple],
    capture_output=True, text=True, check=True).stdout)


def version(text):
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


ours = next(p for p in meta["packages"] if p["name"] == "aloop")["rust_version"]
resolved = {node["id"] for node in meta["resolve"]["nodes"]}
newer = [f'{p["name"]} {p["version"]} needs Rust {p["rust_version"]}'
         for p in meta["packages"]
         if p["id"] in resolved and p["rust_version"] and version(p["rust_version"]) > version(ours)]
if newer:
    sys.exit(f"rust-version = {ours} in Cargo.toml, but:\n  " + "\n  ".join(newer))
print(f"rust-version {ours}: every dependency builds with it")
