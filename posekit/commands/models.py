"""List the registered networks.

Weights are found by explicit path, then the folder named by POSEKIT_MODELS, then the cache
(POSEKIT_CACHE or ~/.cache/posekit), then downloaded from the official source.

Behind a proxy or offline, set POSEKIT_MIRROR=http://host/path to a server laid out like a
models folder: files are then fetched as <mirror>/<relative path> (e.g.
<mirror>/movenet-thunder/model.json) instead of from the official hosts, checksums verified
as usual. A failed download names the file, the URL, the reason and where to put it by hand.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one model in full")
    p.add_argument("--task", choices=["pose", "detector"], help="only models of this task")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from posekit import families, registry

    if args.name:
        spec = registry.get(args.name)
        local = []
        for wf in spec.files:
            try:
                local.append(str(registry.find_file(wf, download=False)))
            except registry.WeightsNotFound:
                local.append("(not found locally)")
        record = {**asdict(spec), "kind": families.of(spec).kind, "local_files": local}
        print(json.dumps(record, indent=2, default=str))
        return 0
    specs = [registry.MODELS[n] for n in registry.names(args.task)]
    if args.json:
        print(json.dumps([asdict(s) for s in specs], indent=2, default=str))
        return 0
    rows = [("name", "kind", "family", "input", "format", "licence", "accuracy")]
    rows += [(s.name, families.of(s).kind, s.family, f"{s.input_size[1]}x{s.input_size[0]}", s.format,
              s.licence.split(" ")[0], s.accuracy) for s in specs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0
