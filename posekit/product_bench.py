"""The product against its engine: what users run (`posekit infer` / `posekit track` as commands)
timed end to end against the engine-only pipeline and the library stream, on the same video (and
optionally the same folder of photos), in one run, so the gap between them stays visible.

Rows (`bench_product` returns them under "rows", `format_table` prints them):

  engine    the engine-only pipeline, in this process. For the all-torch pipeline (--backend
            torch / inductor): `estimator.pipeline.stream(frames, estimator.frames_per_batch)`
            (threaded decode, chunks to the device, poses back to the host; no person scores, no
            pose NMS, no output). `PoseEstimator` (onnxruntime / tensorrt) has no separate engine
            pipeline: its closest equivalent is `estimator.stream` on frames already decoded in
            memory (no decoding, no output; person scores and pose NMS included). The row says
            which it ran.
  library   `estimator.stream` on the video, decoded as `posekit infer` decodes it, nothing written
  infer     `python -m posekit infer VIDEO --no-vis` as a subprocess
  track     `python -m posekit track VIDEO` as a subprocess (--track-args adds e.g. --no-video)
  images_library, images_infer (with --images DIR): the estimator on the folder's photos in this
            process, and `posekit infer DIR --no-vis`

A command runs on the whole input (N frames or images) and on its first tenth (n): steady
frames/s = (N - n) / (t_N - t_n), where t is the seconds the command reports for its work (its
summary line: after imports, model building and compilation, whose seconds vary between runs by
more than 3,000 frames take on a GPU; the wall time when it reports none), and start-up = T_n -
n / steady with T the wall time. Compilation ("compiled ... in S s" in the command's log) is
reported apart from the rest of start-up. Each command's output (stdout and its log on stderr)
goes to commands.log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

log = logging.getLogger(__name__)

COMMANDS = ("infer", "track")
SHORT_FRACTION = 10  # the short run takes the first 1/SHORT_FRACTION of the frames (or images)
IN_MEMORY_BYTES = 256 << 20  # decoded frames held for the CPU engine row
# posekit.engines.inductor logs "compiled <Module> for batch 8,64 (mode, fp16) in 12.3 s; ..."
COMPILED = re.compile(r"\bcompiled\b.*?\bin ([0-9]+(?:\.[0-9]+)?) ?s\b")
# posekit.estimators logs "yolox-nano + movenet-thunder built on cuda in 3.2 s" (weights, device set-up)
BUILT = re.compile(r"\bbuilt on \S+ in ([0-9]+(?:\.[0-9]+)?) s\b")
# the seconds a command reports for its own work (after start-up): infer's and track's summary lines
WORK_SECONDS = re.compile(r"\b([0-9]+(?:\.[0-9]+)?) s \([0-9.]+ frames/s\)")
ENGINE_GPU = ("estimator.pipeline.stream: decode thread, device pipeline, poses to the host; no person "
              "scores, no pose NMS, no output")
ENGINE_CPU = ("{cls} has no separate engine pipeline; closest equivalent: estimator.stream on frames already "
              "decoded in memory (the video's first {held} frames, cycled), no decoding, no output; person "
              "scores and pose NMS included")


# -- inputs -------------------------------------------------------------------------------------


def make_looped_video(source: str | os.PathLike, frames: int, path: str | os.PathLike, fps: float = 25.0) -> Path:
    """Write `frames` frames of `source`, looped from its start as often as needed, to `path`
    (OpenCV, mp4v), so a short clip makes a video of any length. Returns `path`."""
    import cv2

    from posekit.io import iter_video

    path = Path(path)
    writer = None
    written = 0
    try:
        while written < frames:
            before = written
            for frame in iter_video(str(source), max_frames=frames - written):
                if writer is None:
                    h, w = frame.image.shape[:2]
                    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise OSError(f"{path}: OpenCV cannot write an mp4v video here")
                writer.write(frame.image)
                written += 1
            if written == before:
                raise ValueError(f"{source}: no decodable frame")
    finally:
        if writer is not None:
            writer.release()
    return path


def video_frames(path: str | os.PathLike) -> Iterator[Any]:
    """The frames of a video as `posekit infer` decodes them (posekit.io.iter_video)."""
    from posekit.io import iter_video

    return (frame.image for frame in iter_video(str(path)))


def first_frames(path: str | os.PathLike, frames: int, budget: int = IN_MEMORY_BYTES) -> list[Any]:
    """The video's first `frames` frames, decoded, at most `budget` bytes of them (at least one)."""
    held: list[Any] = []
    size = 0
    for image in video_frames(path):
        if len(held) == frames or (held and size + image.nbytes > budget):
            break
        held.append(image)
        size += image.nbytes
    return held


def image_files(folder: str | os.PathLike) -> list[str]:
    """The images `posekit infer FOLDER` reads, in its order."""
    from posekit.io import expand_inputs

    sources, problems = expand_inputs([str(folder)])
    files = [s.path for s in sources if s.kind == "image"]
    if problems or not files:
        raise ValueError(f"--images {folder}: expected a folder of images, found {len(files)} image(s)"
                         + (f" ({problems[0]})" if problems else ""))
    return [str(f) for f in files]


def subset_folder(files: Sequence[str], folder: Path) -> Path:
    """A fresh folder holding copies of `files` (the short run of `posekit infer DIR`)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copy2(f, folder / f"{i:06d}-{Path(f).name}")
    return folder


# -- figures ------------------------------------------------------------------------------------


def compile_seconds(text: str) -> float | None:
    """Seconds of compilation a posekit log reports ("compiled ... in S s" lines, summed); None
    when it reports none."""
    return _summed(COMPILED, text)


def build_seconds(text: str) -> float | None:
    """Seconds a posekit log reports for building the device pipeline before compiling ("... built
    on DEVICE in S s" lines, summed); None when it reports none."""
    return _summed(BUILT, text)


def _summed(pattern: re.Pattern, text: str) -> float | None:
    found = [float(m.group(1)) for m in pattern.finditer(text)]
    return round(sum(found), 2) if found else None


def work_seconds(stdout: str) -> float | None:
    """The seconds a command's summary lines give for its work, after start-up ("... 3000 frames,
    ..., 12.10 s (247.9 frames/s)"), summed; None when it prints none."""
    found = [float(m.group(1)) for m in WORK_SECONDS.finditer(stdout)]
    return round(sum(found), 3) if found else None


def split_startup(n_long: int, t_long: float, n_short: int, t_short: float) -> dict:
    """Steady rate and start-up from two runs of one command on n_short and n_long items:
    steady = (n_long - n_short) / (t_long - t_short), start-up = t_short - n_short / steady.
    Both None when the long run was not slower (too few items to tell them apart)."""
    if n_long <= n_short or t_long <= t_short:
        return {"steady_per_s": None, "startup_s": None,
                "note": f"the {n_long}-item run ({t_long:.2f} s) was not slower than the {n_short}-item run "
                        f"({t_short:.2f} s): too few items to separate start-up from steady state"}
    steady = (n_long - n_short) / (t_long - t_short)
    return {"steady_per_s": round(steady, 2), "startup_s": round(t_short - n_short / steady, 2)}


def ratio(value: float | None, reference: float | None) -> float | None:
    return round(value / reference, 3) if value and reference else None


def _count_poses(records: Iterable[dict]) -> tuple[int, int]:
    frames = people = 0
    for record in records:
        frames += 1
        people += len(record["poses"])
    return frames, people


def jsonl_counts(folder: Path) -> dict:
    """Frames and people in the JSON Lines a command wrote to `folder` (its journal aside)."""
    import json

    from posekit.journal import JOURNAL_NAME

    files = [p for p in sorted(folder.glob("*.jsonl")) if p.name != JOURNAL_NAME]
    if not files:
        return {}
    frames = people = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            n, p = _count_poses(json.loads(line) for line in f if line.strip())
        frames += n
        people += p
    return {"frames": frames, "people": people}


def results_counts(folder: Path) -> dict:
    """Images and people in the results.json `posekit infer` wrote to `folder`."""
    import json

    results = folder / "results.json"
    ids = folder / "results.images.json"
    if not results.is_file() or not ids.is_file():
        return {}
    return {"images": len(json.loads(ids.read_text())["images"]), "people": len(json.loads(results.read_text()))}


# -- running --------------------------------------------------------------------------------------


class _CompileLog(logging.Handler):
    """Collects posekit's "compiled ... in S s" records while the in-process estimator is built."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(record.getMessage())


def _timed_stream(stream: Iterable[Any]) -> dict:
    start = time.perf_counter()
    frames = people = 0
    for poses in stream:
        frames += 1
        people += len(poses)
    seconds = time.perf_counter() - start
    return {"frames": frames, "people": people, "seconds": round(seconds, 3),
            "per_s": round(frames / seconds, 2) if seconds > 0 else None}


def _free_device_memory() -> None:
    """Collect the dropped in-process estimator and (when torch is loaded) return its cached
    device memory, so the commands get the device to themselves."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _command_env() -> dict:
    """The environment of the timed commands: this one, with this copy of posekit first on the path."""
    import posekit

    root = str(Path(posekit.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, *([path] if path else [])])}


class _Commands:
    """Runs `python -m posekit -v ...` and keeps each run's output in `log_path`."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.env = _command_env()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("", encoding="utf-8")

    def __call__(self, args: list[str], label: str) -> dict:
        argv = [sys.executable, "-m", "posekit", "-v", *args]
        start = time.perf_counter()
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"===== {label}: {shlex.join(argv)}\n===== exit {result.returncode}, {seconds:.2f} s\n")
            f.write(f"----- stdout\n{result.stdout}----- stderr\n{result.stderr}\n")
        if result.returncode != 0:
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
            raise RuntimeError(f"{label}: `posekit {' '.join(args[:2])} ...` exited {result.returncode}: {tail[0]} "
                               f"(whole output in {self.log_path})")
        logged = result.stdout + result.stderr
        return {"seconds": round(seconds, 3), "compile_s": compile_seconds(logged), "build_s": build_seconds(logged),
                "work_s": work_seconds(result.stdout)}


def _time_command(run: _Commands, name: str, inputs: tuple[Any, Any], counts: tuple[int, int], out: Callable[[str], Path],
                  options: list[str], warm_runs: int, repeat: int, counter: Callable[[Path], dict]) -> dict:
    """Time one command on the short and the long input, `repeat` times each, interleaved (the
    fastest of each counts); returns its row (its "frames" or "images" and "people": `counter` of
    the long run's output folder)."""
    short, long = inputs
    n_short, n_long = counts
    runs: dict[str, dict] = {}
    plan = [*((f"warm-{i + 1}", short) for i in range(warm_runs)), *[(label, source) for _ in range(repeat)
                                                                    for label, source in (("short", short), ("long", long))]]
    for label, source in plan:
        done = run([name, str(source), "--out", str(out(label)), "--overwrite", *options], f"{name} {label}")
        log.info("%s %s: %.2f s", name, label, done["seconds"])
        if label not in runs:
            runs[label] = {**done, "all_s": []}
        elif done["seconds"] < runs[label]["seconds"]:
            runs[label].update(done)
        runs[label]["all_s"].append(done["seconds"])
    row: dict[str, Any] = {"runs": runs, "command": ["posekit", name, str(long), *options]}
    row.update(counter(out("long")))
    # Start-up (imports, model building, compilation) varies by seconds between runs, more than
    # 3,000 frames take on a GPU: the steady rate comes from the seconds each command reports for
    # its own work when it reports them (infer's and track's summary lines), else from wall times.
    timed = (all(runs[label].get("work_s") for label in ("short", "long"))
             and runs["long"]["work_s"] > runs["short"]["work_s"])
    key = "work_s" if timed else "seconds"
    split = split_startup(n_long, runs["long"][key], n_short, runs["short"][key])
    if timed and split["steady_per_s"]:
        split["startup_s"] = round(runs["short"]["seconds"] - n_short / split["steady_per_s"], 2)
    row["steady_from"] = "the commands' own work seconds" if timed else "wall times"
    row["steady_per_s"] = split.pop("steady_per_s")
    row["startup_s"] = split.pop("startup_s")
    row.update(split)
    row["compile_s"] = runs["short"]["compile_s"]
    row["build_s"] = runs["short"]["build_s"]  # of the start-up without compiling: the pipeline's building
    if row["startup_s"] is not None and row["compile_s"] is not None:
        row["startup_without_compile_s"] = round(row["startup_s"] - row["compile_s"], 2)
    row["whole_run_per_s"] = round(n_long / runs["long"]["seconds"], 2)
    return row


def bench_product(video: str | os.PathLike | None, frames: int = 3000, images: str | os.PathLike | None = None,
                  device: str = "cpu", backend: str | None = None, precision: str | None = None,
                  det: str | None = None, pose: str | None = None, commands: Sequence[str] = COMMANDS,
                  infer_args: Sequence[str] = (), track_args: Sequence[str] = (), work: str | os.PathLike | None = None,
                  json_path: str | os.PathLike | None = None, warm_runs: int | None = None, repeat: int = 3) -> dict:
    """Time the product against the engine-only pipeline (see the module docstring); returns the
    report, also written to `json_path` (atomically) after every step, the commands' output to
    commands.log beside it (or in `work`).

    video: the clip to loop into a `frames`-frame video (and its first tenth); None skips the video rows.
    images: a folder of photos for the images rows (None skips them).
    device, backend, precision, det, pose: as `posekit infer` takes them (None: its defaults).
    commands: which of "infer" and "track" to time on the video.
    infer_args, track_args: extra arguments for those commands (infer always gets --no-vis).
    work: scratch folder for the videos and the commands' outputs (None: a temporary one, removed
    at the end).
    warm_runs: short runs of each command before the timed ones (None: 1 for --backend inductor,
    so the timed runs find the kernel cache warm, 0 otherwise).
    repeat: timed runs of each command on each input, short and long interleaved; the fastest counts.
    """
    from posekit.cli import check_device
    from posekit.io import write_json

    if video is None and images is None:
        raise ValueError("--stage product times the commands on a video and/or photos: pass --video FILE and/or --images DIR")
    unknown = sorted(set(commands) - set(COMMANDS))
    if unknown:
        raise ValueError(f"--commands: expected some of {','.join(COMMANDS)}, got {','.join(unknown)}")
    if repeat < 1:
        raise ValueError(f"--repeat: expected at least 1, got {repeat}")
    if frames < 2 * SHORT_FRACTION:
        raise ValueError(f"--frames: expected at least {2 * SHORT_FRACTION} (the short run takes a tenth), got {frames}")
    if video is not None and not Path(video).is_file():
        raise ValueError(f"--video {video}: no such file")
    files = image_files(images) if images is not None else []
    if images is not None and len(files) < 2:
        raise ValueError(f"--images {images}: expected at least 2 images (a short run and a whole run), found {len(files)}")
    check_device(device)
    backend = backend or _infer_default_backend()
    warm_runs = (1 if backend == "inductor" else 0) if warm_runs is None else warm_runs
    temporary = work is None
    work = Path(tempfile.mkdtemp(prefix="posekit-product-") if work is None else work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log_path = (Path(json_path).resolve().parent if json_path else work) / "commands.log"
    report: dict[str, Any] = {
        "stage": "product", "video": str(video) if video else None, "images": str(images) if images else None,
        "device": device, "backend": backend, "precision": precision or "default", "det": det or "default",
        "pose": pose or "default", "warm_runs": warm_runs, "repeat": repeat, "machine": _machine(),
        "commands_log": str(log_path), "in_process": None, "rows": {}, "errors": [],
    }

    def save() -> None:
        if json_path:
            write_json(json_path, report, pretty=True)

    options = ["--device", device, "--backend", backend, *(["--precision", precision] if precision else []),
               *(["--det", det] if det else []), *(["--pose", pose] if pose else [])]
    run = _Commands(log_path)
    rows = report["rows"]

    def command_row(key: str, time_it: Callable[[], dict], reference: str, ratio_key: str,
                    same_people_as: str | None) -> None:
        """rows[key] = time_it(), its steady rate against rows[reference] and its people count
        against rows[same_people_as]; a failed command becomes an error row."""
        try:
            row = time_it()
        except (RuntimeError, OSError) as exc:
            rows[key] = {"error": str(exc)}
            report["errors"].append(str(exc))
            log.error("%s", exc)
        else:
            row[ratio_key] = ratio(row["steady_per_s"], rows[reference]["per_s"])
            if same_people_as and "people" in row:
                row["people_match_library"] = row["people"] == rows[same_people_as]["people"]
            rows[key] = row
        save()

    try:
        videos = None
        if video is not None:
            n_short = frames // SHORT_FRACTION
            report.update(frames=frames, short_frames=n_short)
            videos = (make_looped_video(video, n_short, work / "short.mp4"), make_looped_video(video, frames, work / "long.mp4"))
            log.info("videos: %d and %d frames in %s", frames, n_short, work)
        if files:
            k = max(1, len(files) // SHORT_FRACTION)
            report.update(image_count=len(files), short_images=k)
        _in_process_rows(options, videos, frames, files, repeat, report, save)
        _free_device_memory()
        for name in (c for c in COMMANDS if c in commands and videos is not None):
            extra = ["--no-vis", *infer_args] if name == "infer" else list(track_args)
            command_row(name, lambda name=name, extra=extra: _time_command(
                run, name, videos, (n_short, frames), lambda label: work / f"{name}-{label}", [*extra, *options],
                warm_runs, repeat, jsonl_counts), "engine", "ratio_to_engine",
                "library" if name == "infer" else None)
        if files:
            folders = (subset_folder(files[:k], work / "images-short"), subset_folder(files, work / "images-all"))
            command_row("images_infer", lambda: _time_command(
                run, "infer", folders, (k, len(files)), lambda label: work / f"infer-images-{label}",
                ["--no-vis", *infer_args, *options], warm_runs, repeat, results_counts),
                "images_library", "ratio_to_library", "images_library")
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    return report


def _in_process_rows(options: list[str], videos: tuple[Path, Path] | None, frames: int, files: list[str], repeat: int,
                     report: dict, save: Callable[[], None]) -> None:
    """Build the estimator `posekit infer` would (timed, compiles counted) and time the engine,
    library and images_library rows with it; the estimator is dropped on return."""
    rows = report["rows"]
    with _compile_log() as compiles:
        estimator, startup = _in_process_estimator(options, compiles)
        at_startup = len(compiles.text)
        report["in_process"] = startup
        report["precision"] = report["precision"] if report["precision"] != "default" else startup["precision"] or "default"
        report["machine"] = _machine()  # with the GPU's name, now that the estimator loaded torch
        save()
        if videos is not None:
            _engine_and_library(estimator, videos[1], videos[0], frames, repeat, rows)
            save()
        if files:
            _timed_stream(estimator.stream(files[:report["short_images"]]))  # warm: new image sizes may compile
            row = _fastest(lambda: estimator.stream(files), repeat)
            rows["images_library"] = {"what": "estimator.stream on the images' paths (read as posekit infer reads "
                                              "them), nothing written", "images": row.pop("frames"), **row}
            save()
        # compiled after start-up, in the warm passes or (a new batch or frame size) in the timed ones
        startup["compile_later_s"] = compile_seconds("\n".join(compiles.text[at_startup:]))
        save()


def _infer_default_backend() -> str:
    from posekit.cli import build_parser

    return build_parser().parse_args(["infer", "-", "--out", "-"]).backend


@contextlib.contextmanager
def _compile_log() -> Iterator[_CompileLog]:
    """posekit's log records at INFO and above, collected while the block runs (the level of the
    "posekit" logger raised to INFO meanwhile, if it was quieter)."""
    handler = _CompileLog()
    logger = logging.getLogger("posekit")
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _in_process_estimator(options: list[str], compiles: _CompileLog) -> tuple[Any, dict]:
    """The estimator `posekit infer` builds for `options`, and how long building it took (and how
    much of that was compilation, from posekit's log)."""
    from posekit.cli import build_parser
    from posekit.commands.infer import make_infer_estimator

    args = build_parser().parse_args(["infer", "-", "--out", "-", *options])
    start = time.perf_counter()
    estimator = make_infer_estimator(args)
    seconds = time.perf_counter() - start
    return estimator, {"estimator": type(estimator).__name__, "startup_s": round(seconds, 2),
                       "compile_s": compile_seconds("\n".join(compiles.text)),
                       "frames_per_batch": getattr(estimator, "frames_per_batch", None),
                       "precision": getattr(estimator, "precision", None)}


def _fastest(make_stream: Callable[[], Iterable[Any]], repeat: int) -> dict:
    """`_timed_stream` of `repeat` fresh streams; the fastest pass counts."""
    passes = [_timed_stream(make_stream()) for _ in range(repeat)]
    best = min(passes, key=lambda r: r["seconds"])
    return {**best, "all_s": [r["seconds"] for r in passes]}


def _engine_and_library(estimator: Any, long_video: Path, short_video: Path, frames: int, repeat: int,
                        rows: dict) -> None:
    pipeline = getattr(estimator, "pipeline", None)
    if pipeline is not None and hasattr(pipeline, "stream"):
        def engine(path: Path) -> Iterable[Any]:
            return pipeline.stream(video_frames(path), estimator.frames_per_batch)

        what = ENGINE_GPU
        _timed_stream(engine(short_video))  # warm
        row = _fastest(lambda: engine(long_video), repeat)
    else:
        _timed_stream(estimator.stream(video_frames(short_video)))  # warm
        held = first_frames(long_video, frames)
        what = ENGINE_CPU.format(cls=type(estimator).__name__, held=len(held))
        row = _fastest(lambda: estimator.stream(held[i % len(held)] for i in range(frames)), repeat)
        del held
    rows["engine"] = {"what": what, **row}
    log.info("engine-only: %s", row)
    row = _fastest(lambda: estimator.stream(video_frames(long_video)), repeat)
    rows["library"] = {"what": "estimator.stream on the video decoded as posekit infer decodes it (posekit.io."
                               "iter_video), nothing written", **row,
                       "ratio_to_engine": ratio(row["per_s"], rows["engine"]["per_s"])}
    log.info("library stream: %s", row)


def _machine() -> dict:
    import platform

    machine: dict[str, Any] = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                               "python": platform.python_version(),
                               "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    torch = sys.modules.get("torch")
    if torch is not None:
        machine["torch"] = torch.__version__
        if torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
    return machine


# -- the table ------------------------------------------------------------------------------------

ROW_NAMES = {"engine": "engine-only", "library": "library stream", "infer": "infer steady", "track": "track steady",
             "images_library": "images: in-process", "images_infer": "images: infer steady"}


def format_table(report: dict) -> str:
    """The report as a table: frames/s (images/s for the images rows), start-up and compile
    seconds, and each row's rate against the engine (the images rows: against the in-process one)."""
    def num(value: Any, fmt: str = "{:.1f}") -> str:
        return "-" if value is None else fmt.format(value)

    rows = report["rows"]
    table = [("", "frames/s", "start-up s", "of which compile s", "ratio", "people")]
    for key, label in ROW_NAMES.items():
        row = rows.get(key)
        if row is None:
            continue
        if "error" in row:
            table.append((label, "failed", "", "", "", ""))
            continue
        if key in ("engine", "images_library"):
            startup = report["in_process"]["startup_s"] if key == "engine" else None
            compile_ = report["in_process"]["compile_s"] if key == "engine" else None
            table.append((label, num(row["per_s"]), num(startup, "{:.2f}"), num(compile_, "{:.2f}"), "1.00",
                          str(row["people"])))
        else:
            rate = row.get("steady_per_s", row.get("per_s"))
            share = row.get("ratio_to_engine", row.get("ratio_to_library"))
            table.append((label, num(rate), num(row.get("startup_s"), "{:.2f}"), num(row.get("compile_s"), "{:.2f}"),
                          num(share, "{:.2f}"), str(row.get("people", "-"))))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in table]
    what = f"{report['device']}, {report['backend']}, precision {report['precision']}"
    if "frames" in report:
        what += f"; {report['frames']}-frame video (short run {report['short_frames']})"
    if "image_count" in report:
        what += f"; {report['image_count']} images (short run {report['short_images']})"
    lines.append(what)
    if "engine" in rows:
        lines.append(f"engine-only: {rows['engine']['what']}")
    runs = "one run each" if report["repeat"] == 1 else f"fastest of {report['repeat']} runs each"
    lines.append(f"{runs}; images rows in images/s; start-up of engine-only: "
                 "building the estimator in this process; of the commands: T_short - n_short / steady; ratio: "
                 "steady / engine-only (images: / in-process)")
    later = (report.get("in_process") or {}).get("compile_later_s")
    if later:
        lines.append(f"in this process, {later:.2f} s more compilation after start-up (warm passes, new sizes)")
    for row in rows.values():
        if row.get("note"):
            lines.append(f"note: {row['note']}")
    lines += [f"failed: {e}" for e in report["errors"]]
    lines.append(f"commands' output: {report['commands_log']}")
    return "\n".join(lines)
