"""Disk footprint of a virtual environment's installed packages (what `pip install` cost).

    python scripts/env_footprint.py .venv-base [--limit-mb 350]

Prints the size of what was installed into site-packages and its largest entries; exits 1 when
--limit-mb is given and exceeded. What every fresh venv already holds (pip, setuptools and their
helpers) is left out: it is not what the install cost. Sizes are apparent file sizes (bytes in
files), in MB (10^6 bytes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


# what `python -m venv` puts in every environment
FRESH_VENV = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth")


def _fresh(name: str) -> bool:
    return name in FRESH_VENV or any(name.startswith(f"{p}-") and name.endswith(".dist-info") for p in FRESH_VENV)


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("venv", type=Path)
    parser.add_argument("--limit-mb", type=float)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    sites = sorted(args.venv.glob("lib/python*/site-packages"))
    if not sites:
        print(f"{args.venv}: no lib/python*/site-packages here", file=sys.stderr)
        return 2
    entries = sorted(((folder_bytes(p), p.name) for p in sites[0].iterdir() if not _fresh(p.name)), reverse=True)
    total = sum(size for size, _ in entries)
    print(f"{args.venv}: {total / 1e6:.0f} MB installed in {sites[0]} (pip and setuptools not counted)")
    for size, name in entries[: args.top]:
        print(f"  {size / 1e6:8.1f} MB  {name}")
    if args.limit_mb is not None and total / 1e6 > args.limit_mb:
        print(f"over the {args.limit_mb:g} MB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
