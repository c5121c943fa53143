"""PyTorch Inductor engines: `torch.compile` (JIT, per-batch-size static graphs, CUDA graphs) and
AOTInductor packages (`.pt2`, compiled ahead of time, loaded without recompiling).

`InductorEngine` compiles the module once per batch size in `batch_sizes` with dynamic=False
(static shapes give Inductor its best kernels and let CUDA graphs replay), and pads a request of
n items up to the next size in the set, or splits it over several sizes when that wastes less
(`batch_plan`: 663 crops over sizes 64 and 256 run as 256, 256, 64, 64, 64). On
CUDA, mode "max-autotune" tunes GEMM/conv choices and captures CUDA graphs; on the CPU the
default mode is used (max-autotune's CPU templates take minutes to tune).

Called with numpy arrays they return numpy float32 arrays; called with torch tensors (CUDA
tensors for a GPU engine) they return tensors on the device in the engine's dtype, which stay
valid after the next call (outputs of CUDA-graph replays are cloned out of the graph's pool).
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from posekit.engines import TensorSpec
from posekit.engines.torch_eager import TorchEagerEngine, as_output_list, to_device_inputs, to_numpy, torch_dtype

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def default_mode(device: torch.device) -> str:
    """POSEKIT_INDUCTOR_MODE when set; else reduce-overhead on CUDA (CUDA graphs without GEMM/conv
    autotuning: the all-GPU pipeline's 838 frames/s was measured so, and it compiles in seconds
    where max-autotune takes minutes) and the default mode on the CPU."""
    return os.environ.get("POSEKIT_INDUCTOR_MODE") or ("reduce-overhead" if device.type == "cuda" else "default")


def persistent_cache() -> Path:
    """Where Inductor keeps compiled kernels and graphs between runs: TORCHINDUCTOR_CACHE_DIR when
    set, else posekit's cache folder (``inductor/``), so `posekit build` and the first run pay the
    compile and later runs load it."""
    from posekit import registry

    folder = os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(registry.cache_dir() / "inductor"))
    return Path(folder)


def _raise_recompile_limit(n: int) -> None:
    """Each static batch size is one more dynamo cache entry for the module's forward."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name) and getattr(dynamo_config, name) < n:
            setattr(dynamo_config, name, n)


def padded_batch(n: int, sizes: Sequence[int]) -> int:
    """The smallest size in `sizes` (sorted) holding n items; the largest size when none does."""
    i = bisect.bisect_left(sizes, n)
    return sizes[min(i, len(sizes) - 1)]


# a call costs about as much as running this many more items (kernel launches, a graph replay)
CALL_COST_ITEMS = 16


@functools.lru_cache(maxsize=4096)
def batch_plan(n: int, sizes: tuple[int, ...], call_cost: int = CALL_COST_ITEMS) -> tuple[int, ...]:
    """The compiled batch sizes to run n items through: the plan with the least padded work plus
    `call_cost` items per call, e.g. 663 crops over sizes (64, 256) -> (256, 256, 64, 64, 64),
    where padding the last 151 up to 256 would waste 105 crops. Sizes are sorted ascending."""
    if n <= 0:
        return ()
    best = [0] + [0] * n  # best[r]: least cost for r items
    choice = [0] * (n + 1)
    for r in range(1, n + 1):
        best[r] = -1
        for b in sizes:
            cost = b + call_cost + best[max(0, r - b)]
            if best[r] < 0 or cost < best[r]:
                best[r], choice[r] = cost, b
    plan, r = [], n
    while r > 0:
        plan.append(choice[r])
        r = max(0, r - choice[r])
    return tuple(sorted(plan, reverse=True))


class InductorEngine(TorchEagerEngine):
    """A torch module compiled by Inductor, one static graph per batch size.

    precision:   "fp16" / "bf16" (the GPU targets) or "fp32"
    batch_sizes: the static batch sizes compiled; requests are padded up to the next one (or
                 split, `batch_plan`). "dynamic": one graph with a symbolic batch axis (any
                 batch from 2 up, and one more graph for a batch of 1), no padding, in a mode
                 without CUDA graphs ("default" unless POSEKIT_INDUCTOR_MODE says otherwise: a
                 CUDA graph would be captured per distinct batch)
    mode:        torch.compile mode; None picks `default_mode`
    """

    backend = "inductor"

    def __init__(self, module: Any, device: str = "cpu", precision: str = "fp32",
                 batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, mode: str | None = None,
                 channels_last: bool = True, inputs: Sequence[TensorSpec] = (), output_names: Sequence[str] = (),
                 metadata: dict[str, str] | None = None) -> None:
        super().__init__(module, device=device, precision=precision, channels_last=channels_last,
                         inputs=inputs, output_names=output_names, metadata=metadata)
        self.dynamic = batch_sizes == "dynamic"
        if self.dynamic:
            self.batch_sizes: tuple[int, ...] = ()
            self.mode = mode or os.environ.get("POSEKIT_INDUCTOR_MODE") or "default"
        else:
            if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
                raise ValueError(f"expected batch sizes >= 1 or 'dynamic', got {batch_sizes!r}")
            self.batch_sizes = tuple(sorted({int(b) for b in batch_sizes}))
            self.mode = mode or default_mode(self.device)
        self.cuda_graphs = self.device.type == "cuda" and self.mode in ("max-autotune", "reduce-overhead")
        if self.dynamic and self.cuda_graphs:
            raise ValueError(f"a dynamic batch captures a CUDA graph per batch size: use a mode without CUDA graphs, "
                             f"not {self.mode!r}")
        _raise_recompile_limit(len(self.batch_sizes) + 8)
        persistent_cache()
        self.compiled = torch.compile(self.module, mode=self.mode, dynamic=False)

    def warmup(self, sample_shape: Sequence[int], dtype: torch.dtype | None = None, runs: int = 2) -> float:
        """Compile (and capture) every batch size now, from one item's shape, e.g. (3, 256, 256);
        returns the seconds it took (logged: a cold compile takes tens of seconds, a warm
        `persistent_cache` a few)."""
        import time

        dtype = dtype or self.dtype
        start = time.perf_counter()
        # Samples made as the pipeline makes its inputs: inference tensors (made outside
        # inference_mode, they fail the graphs' dispatch-key guards: every graph recompiled on its
        # first real batch, 7 s into a 300-frame `infer` on the H200) in channels_last (other strides
        # fail the stride guards likewise).
        with torch.inference_mode():
            for b in self.batch_sizes or (1, 2):
                x = torch.zeros((b, *sample_shape), dtype=dtype, device=self.device)
                if self.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                for _ in range(runs):
                    self.forward([x])
        self.synchronize()
        seconds = time.perf_counter() - start
        log.info("compiled %s for batch %s (%s, %s) in %.1f s; kernels cached in %s", type(self.module).__name__,
                 ",".join(map(str, self.batch_sizes)) or "1,dynamic", self.mode, self.precision, seconds,
                 persistent_cache())
        return seconds

    def _run_static(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        n = tensors[0].shape[0]
        b = padded_batch(n, self.batch_sizes)
        if b != n:
            tensors = [torch.cat([t, t.new_zeros((b - n, *t.shape[1:]))]) if t.dim() else t for t in tensors]
        # one memory layout whatever the caller passed (a slice, a padded batch): the graphs were
        # compiled for it, and another layout would fail their guards and recompile mid-stream
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        tensors = [t.contiguous(memory_format=memory_format) if t.dim() == 4 else t for t in tensors]
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = as_output_list(self.compiled(*tensors))
        # Slice off the padding; clone so that the next CUDA-graph replay cannot overwrite it.
        return [o[:n].clone() if self.cuda_graphs or b != n else o for o in out]

    def _run_dynamic(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        if tensors[0].shape[0] > 1:
            for t in tensors:
                if t.dim():
                    torch._dynamo.maybe_mark_dynamic(t, 0)
        return as_output_list(self.compiled(*tensors))

    def forward(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.inference_mode():
            if self.dynamic:
                return self._run_dynamic(tensors)
            plan = batch_plan(tensors[0].shape[0], self.batch_sizes)
            if len(plan) == 1:
                return self._run_static(tensors)
            parts, start = [], 0
            for b in plan:
                parts.append(self._run_static([t[start : start + b] for t in tensors]))
                start += b
            return [torch.cat(chunk) for chunk in zip(*parts)]


def compile_aoti(module: torch.nn.Module, sample: torch.Tensor, package_path: str | os.PathLike,
                 precision: str = "fp32", device: str = "cpu", batch_range: tuple[int, int] = (1, 256),
                 channels_last: bool = False) -> Path:
    """Export `module` with a dynamic batch axis and compile it into an AOTInductor package.

    sample: one example input batch (its non-batch shape is fixed in the package).
    The package is written to a temporary name and renamed, so a crash leaves no half file.
    """
    dev = torch.device(device)
    dtype = torch_dtype(precision)
    module = module.eval().to(dev, dtype)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    sample = sample.to(dev, dtype)
    low, high = batch_range
    batch = torch.export.Dim("batch", min=max(1, low), max=max(high, 2))
    if sample.shape[0] < 2:  # a batch of 1 would let export specialise the axis to 1
        sample = sample.expand(2, *sample.shape[1:]).contiguous()
    with torch.inference_mode():
        exported = torch.export.export(module, (sample,), dynamic_shapes=({0: batch},))
    path = Path(package_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.pt2")
    try:
        torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class AOTInductorEngine:
    """An AOTInductor package (`.pt2`, from `compile_aoti`) loaded and run; no compilation at load.

    precision must match the one the package was compiled with (inputs are cast to it).
    """

    backend = "aotinductor"

    def __init__(self, package: str | os.PathLike, device: str = "cpu", precision: str = "fp32",
                 inputs: Sequence[TensorSpec] = (), output_names: Sequence[str] = (),
                 metadata: dict[str, str] | None = None, max_batch: int | None = None) -> None:
        import torch._inductor

        self.max_batch = max_batch
        self.path = Path(package)
        if not self.path.is_file():
            raise FileNotFoundError(f"no AOTInductor package at {self.path}")
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = torch_dtype(precision)
        self.runner = torch._inductor.aoti_load_package(str(self.path))
        self.inputs = tuple(inputs)
        self.output_names = tuple(output_names)
        self.metadata = dict(metadata or {})

    def __call__(self, *arrays: Any) -> list[Any]:
        tensors, from_numpy = to_device_inputs(arrays, self.device, self.dtype)
        # the package reads its inputs as dense row-major memory: a view (a permuted crop batch) is copied
        tensors = [t.contiguous() for t in tensors]
        n, step = tensors[0].shape[0], self.max_batch or tensors[0].shape[0]
        with torch.inference_mode():
            if n <= step:
                out = as_output_list(self.runner(*tensors))
            else:  # the package's batch axis ends at max_batch: run it in pieces
                parts = [as_output_list(self.runner(*[t[i : i + step] for t in tensors])) for i in range(0, n, step)]
                out = [torch.cat(chunk) for chunk in zip(*parts)]
        return to_numpy(out) if from_numpy else out

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __repr__(self) -> str:
        return f"AOTInductorEngine({self.path}, device={str(self.device)!r}, precision={self.precision!r})"
