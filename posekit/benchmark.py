"""Engine benchmarks per stage (`det`, `pose`), backend, precision and batch size.

Each measurement: real inputs (person crops for `pose`, letterboxed frames for `det`) tiled to
the batch size, `warmup` untimed calls, then `repeat` timed calls, each ended by a device
synchronise for GPU engines; the median is reported. GPU engines are fed tensors already on the
device (in a GPU pipeline the crops never leave it), so host-to-device copies are not timed.

Rows: stage, model, backend, precision, batch, latency_ms, throughput (items/s),
speedup_latency and speedup_throughput over the reference (the first backend/precision at the
same batch), gpu_util (NVML, percent, when available; else None), error (when a row failed).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

STAGE_MODELS = {"pose": "movenet-thunder", "det": "rtmdet-nano-person"}
COLUMNS = ("stage", "model", "backend", "precision", "batch", "latency_ms", "throughput",
           "speedup_latency", "speedup_throughput", "gpu_util", "error")


def _nvml_handle(device: str):
    if not device.startswith("cuda"):
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        index = int(device.split(":")[1]) if ":" in device else 0
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:  # noqa: BLE001 - NVML is optional; the column is then None
        log.info("no GPU utilisation (%s: %s); install nvidia-ml-py for it", type(exc).__name__, exc)
        return None


def _gpu_util(handle) -> float | None:
    if handle is None:
        return None
    import pynvml

    return float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)


def time_engine(engine: Any, x: Any, warmup: int = 3, repeat: int = 20,
                synchronize: Callable[[], None] | None = None, min_seconds: float = 0.0) -> dict[str, float]:
    """Median latency of ``engine(x)`` in ms over `repeat` calls (at least `min_seconds` of them)."""
    sync = synchronize or getattr(engine, "synchronize", None) or (lambda: None)
    for _ in range(warmup):
        engine(x)
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        engine(x)
        sync()
        times.append(time.perf_counter() - t)
    return {"latency_ms": float(np.median(times) * 1e3), "runs": len(times)}


def tile(x: np.ndarray, batch: int) -> np.ndarray:
    """`batch` items cycling through the real inputs `x`."""
    return np.ascontiguousarray(x[np.arange(batch) % len(x)])


def run_stage_benchmark(stage: str, model: str | None = None, backends: Sequence[str] = ("onnxruntime",),
                        precisions: Sequence[str] = ("fp32",), batches: Sequence[int] = (1, 8), device: str = "cpu",
                        annotations: str | os.PathLike | None = None, warmup: int = 3, repeat: int = 20,
                        engine_options: dict[str, dict] | None = None) -> list[dict]:
    """Benchmark every backend x precision x batch for one stage; see the module doc for the rows.

    backends may carry their own precision ("onnxruntime:int8"); those ignore `precisions`.
    engine_options: extra keyword arguments per backend (e.g. {"onnxruntime": {"threads": 2}}).
    A combination that fails (not installed, not supported) gives a row with its error.
    """
    from posekit.build import annotations_path
    from posekit.compare import real_inputs
    from posekit.runtime import make_engine

    if stage not in STAGE_MODELS:
        raise ValueError(f"unknown stage {stage!r}; use one of {', '.join(STAGE_MODELS)}")
    model = model or STAGE_MODELS[stage]
    pairs = []
    for item in backends:
        backend, _, fixed = item.partition(":")
        pairs += [(backend, fixed)] if fixed else [(backend, p) for p in precisions]
    x = real_inputs(model, annotations or annotations_path(), limit=64)
    handle = _nvml_handle(device)
    rows: list[dict] = []
    for backend, precision in pairs:
        base = {"stage": stage, "model": model, "backend": backend, "precision": precision}
        try:
            options = dict((engine_options or {}).get(backend, {}))
            engine = make_engine(model, backend, precision, device, batch_sizes=tuple(batches), **options)
        except Exception as exc:  # noqa: BLE001 - one failing engine must not end the benchmark
            log.warning("%s %s: %s", backend, precision, exc)
            rows += [{**base, "batch": b, "error": f"{type(exc).__name__}: {exc}"} for b in batches]
            continue
        for b in batches:
            row = {**base, "batch": b}
            try:
                inputs = _on_device(tile(x, b), engine, device)
                row.update(time_engine(engine, inputs, warmup, repeat))
                row["throughput"] = b / (row["latency_ms"] / 1e3)
                row["gpu_util"] = _gpu_util(handle)
            except Exception as exc:  # noqa: BLE001
                log.warning("%s %s batch %d: %s", backend, precision, b, exc)
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            log.info("%s", row)
    return add_speedups(rows)


def _on_device(x: np.ndarray, engine: Any, device: str) -> Any:
    if device.startswith("cuda") and getattr(engine, "backend", "") != "onnxruntime":
        import torch

        return torch.from_numpy(x).to(device)
    return x


def add_speedups(rows: list[dict]) -> list[dict]:
    """Speed-ups over the first (backend, precision) of each stage, at the same batch size."""
    reference: dict[tuple, dict] = {}
    first: dict[str, tuple[str, str]] = {}
    for r in rows:
        first.setdefault(r["stage"], (r["backend"], r["precision"]))
        if (r["backend"], r["precision"]) == first[r["stage"]] and "latency_ms" in r:
            reference[(r["stage"], r["batch"])] = r
    for r in rows:
        ref = reference.get((r["stage"], r["batch"]))
        if ref is not None and "latency_ms" in r:
            r["speedup_latency"] = ref["latency_ms"] / r["latency_ms"]
            r["speedup_throughput"] = r["throughput"] / ref["throughput"]
    return rows


# --- writers ------------------------------------------------------------------------------------

def format_table(rows: Sequence[dict]) -> str:
    """The seed-style text table: one line per row, aligned."""
    def cell(key: str, v: Any) -> str:
        if v is None:
            return "-"
        if key == "latency_ms":
            return f"{v:.3f}"
        if key == "throughput":
            return f"{v:.1f}"
        if key.startswith("speedup"):
            return f"{v:.2f}x"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    columns = [c for c in COLUMNS if any(r.get(c) is not None for r in rows)]
    table = [columns] + [[cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table)


def write_json(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    from posekit.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(list(rows), indent=2))
    return Path(path)


def write_csv(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    from posekit.io import atomic_path

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return Path(path)


class PlotUnavailable(ImportError):
    pass


def write_plot(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """A PNG of throughput vs batch size, one line per stage/backend/precision (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("the throughput plot needs matplotlib, which is not installed: "
                              "pip install matplotlib (the table, JSON and CSV need nothing more)") from exc
    from posekit.io import atomic_path

    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r.get("throughput"):
            series.setdefault(f"{r['stage']} {r['backend']} {r['precision']}", []).append((r["batch"], r["throughput"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput (items/s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)
