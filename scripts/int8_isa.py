"""Does an INT8 pose model hold on a CPU without VNNI? Keypoint AP of INT8 variants, native and emulated.

ONNX Runtime's u8s8 kernels (uint8 activations, int8 weights) on x86 CPUs with AVX2 or AVX-512
but no VNNI multiply with `vpmaddubsw`, whose 16-bit sums of two products can saturate; with VNNI
(`vpdpbusd`) they cannot. So one INT8 model can score differently on two CPUs. This script runs
the pose model of the shared-set evaluation under a CPU model without VNNI (qemu-user, whose TCG
emulates AVX2 but not AVX-512), with the detector's boxes and the crops fixed natively:

  # 1. natively: cut the crops the pipeline feeds the pose model, quantise the variants
  POSEKIT_MODELS=../shared/models python scripts/int8_isa.py prepare --model movenet-thunder --out /tmp/isa
  # 2. each variant's raw outputs on those crops, natively and on an emulated AVX2 CPU (EPYC Rome)
  python scripts/int8_isa.py run --out /tmp/isa --tag native
  qemu-x86_64 -cpu EPYC-Rome $(which python) scripts/int8_isa.py run --out /tmp/isa --tag avx2 \
      --only u8s8,u8s8-reduce-range --batches 12
  # 3. natively: AP of each (variant, tag) through posekit.evaluate (full runs only), keypoint
  #    error against FP32, and for emulated rows how far the outputs are from the same model's native ones
  POSEKIT_MODELS=../shared/models python scripts/int8_isa.py score --out /tmp/isa [--batches 12]

`speed` (or `prepare --speed`) times each variant natively (batch 1 and 8, one thread, ms per crop).
Step 2 needs only numpy and onnxruntime (the emulated run imports nothing else). Under QEMU 7.2's
TCG (apt-get install qemu-user) a MoveNet-Thunder crop takes ~30 s in INT8 (its float FPN and
heads are the slow part) and ~4 min in FP32, a TinyPose crop a few seconds in INT8: hence --batches.
Check what the emulated CPU offers with numpy's view of CPUID:
  qemu-x86_64 -cpu EPYC-Rome $(which python) -c "from numpy._core._multiarray_umath import __cpu_features__ as f; print(f['AVX2'], f['AVX512VNNI'])"
Found (2026-11-30, ONNX Runtime 1.32): u8s8 outputs differ between this AVX-512 VNNI CPU and the
emulated EPYC Rome (a MoveNet keypoint by 81 px, a TinyPose one by 188 px); with reduce_range they
are bit-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _key(x: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(x, np.float32).tobytes()).hexdigest()


class Recorder:
    """An engine that runs `engine` and keeps every input batch it was given."""

    def __init__(self, engine) -> None:
        self.engine, self.batches = engine, []
        for name in ("inputs", "output_names", "metadata", "path"):
            setattr(self, name, getattr(engine, name))

    def __call__(self, x):
        self.batches.append(np.array(x, np.float32))
        return self.engine(x)


class Replay:
    """An engine that answers each input batch with the outputs recorded for it."""

    def __init__(self, like, outputs: dict[str, list[np.ndarray]]) -> None:
        self.outputs = outputs
        for name in ("inputs", "output_names", "metadata", "path"):
            setattr(self, name, getattr(like, name))

    def __call__(self, x):
        return self.outputs[_key(x)]


def variants(model: str, source: Path) -> dict:
    """name -> QuantOptions (None: FP32)."""
    import dataclasses

    import onnx

    from posekit import build
    from posekit.quantize import QuantOptions

    default = build.int8_options(model, source)
    # today's options, as main built them (before this script's change): family keep-float, u8s8
    base = dataclasses.replace(default, reduce_range=False, weight_type="int8", activation_type="uint8")
    rows = {"fp32": None, "u8s8": base,
            "u8s8-reduce-range": dataclasses.replace(base, reduce_range=True),
            "u8u8": dataclasses.replace(base, weight_type="uint8"),
            "s8s8": dataclasses.replace(base, activation_type="int8")}
    if model.startswith("tinypose"):
        nodes = [n for n in onnx.load(str(source), load_external_data=False).graph.node]
        convs = [n.name for n in nodes if n.op_type == "Conv"]
        last = tuple(convs[-1:])
        tail = tuple(convs[-6:])
        plain = QuantOptions(op_types=None, extra={"CalibMovingAverage": True})
        rows.update({
            "all-u8s8": plain,
            "all-u8s8-rr": dataclasses.replace(plain, reduce_range=True),
            "all-u8u8": dataclasses.replace(plain, weight_type="uint8"),
            "conv-only-u8u8": dataclasses.replace(plain, op_types=("Conv",), weight_type="uint8"),
            "last-conv-float-u8u8": dataclasses.replace(plain, exclude_nodes=last, weight_type="uint8"),
            "tail6-float-u8u8": dataclasses.replace(plain, exclude_nodes=tail, weight_type="uint8"),
            "first+last-float-u8u8": dataclasses.replace(plain, exclude_nodes=tuple(convs[:1]) + last, weight_type="uint8"),
        })
    return rows


def prepare(args) -> None:
    from posekit import registry
    from posekit.build import annotations_path, calibration_set, onnxruntime_source
    from posekit.engines.onnxruntime import OnnxRuntimeEngine
    from posekit.evaluate import evaluate
    from posekit.pipeline import PoseEstimator
    from posekit.pose_models import TopDownModel
    from posekit.quantize import quantize_onnx

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = registry.get(args.model)
    source = onnxruntime_source(args.model)
    recorder = Recorder(OnnxRuntimeEngine(source, threads=1))
    ann = annotations_path()
    est = PoseEstimator(det=args.det, pose=TopDownModel(recorder, spec), workers=1, threads=1)
    report = evaluate(ann, ann.parent / "images", est, boxes=("detector",))
    batches = {f"b{i}": b for i, b in enumerate(recorder.batches)}
    np.savez(out / "crops.npz", **batches)
    calib = calibration_set(args.model, source)
    table = {}
    for name, options in variants(args.model, source).items():
        if args.only and name not in args.only.split(","):
            continue
        path = out / f"{name}.onnx"
        if options is None:
            import shutil
            shutil.copy(source, path)
        elif not path.exists():
            quantize_onnx(source, path, calib, options)
        table[name] = {"file": path.name, "options": None if options is None else options.label()}
    meta = {"model": args.model, "det": args.det, "crops": int(sum(len(b) for b in recorder.batches)),
            "fp32_AP_recorded": report["detector"]["AP"], "variants": table}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta, indent=2), flush=True)
    if args.speed:
        speed(args)


def speed(args) -> None:
    """Native ms per crop of each variant, batch 1 and 8, one thread, on the model's input size
    (the packaged calibration crops); calls interleaved across variants, the 10th percentile kept
    (other load on a shared machine only ever adds time)."""
    from posekit import registry
    from posekit.calibration import packaged_crops, to_network_input
    from posekit.engines.onnxruntime import OnnxRuntimeEngine

    out = Path(args.out)
    meta = json.loads((out / "meta.json").read_text())
    spec = registry.get(meta["model"])
    engines = {n: OnnxRuntimeEngine(out / t["file"], threads=1) for n, t in meta["variants"].items()
               if not args.only or n in args.only.split(",")}
    calib = to_network_input(packaged_crops(spec.input_size)[:8], spec, next(iter(engines.values())).inputs[0])
    x1, x8 = calib[:1], np.resize(calib, (8, *calib.shape[1:]))
    times = {n: {1: [], 8: []} for n in engines}
    for _ in range(args.repeats):
        for n, e in engines.items():
            for b, xb in ((1, x1), (8, x8)):
                t = time.perf_counter()
                e(xb)
                times[n][b].append((time.perf_counter() - t) * 1000 / b)
    path = out / "speed.json"
    table = json.loads(path.read_text()) if path.exists() else {}
    table.update({n: {f"ms_per_crop_b{b}": round(float(np.percentile(v[b][2:], 10)), 2) for b in (1, 8)}
                  for n, v in times.items()})
    path.write_text(json.dumps(table, indent=2))
    print(json.dumps({n: table[n] for n in engines}, indent=2))


def run(args) -> None:
    import onnxruntime as ort

    out = Path(args.out)
    meta = json.loads((out / "meta.json").read_text())
    crops = np.load(out / "crops.npz")
    batches = [crops[f"b{i}"] for i in range(len(crops.files))][: args.batches]
    for name, row in meta["variants"].items():
        if args.only and name not in args.only.split(","):
            continue
        target = out / f"outputs-{args.tag}-{name}.npz"
        if target.exists():
            continue
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(str(out / row["file"]), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        t = time.perf_counter()
        saved = {}
        for i, b in enumerate(batches):
            for j, o in enumerate(session.run(names, {session.get_inputs()[0].name: b})):
                saved[f"b{i}_o{j}"] = o
            if i == 0:
                print(f"{args.tag} {name}: first batch ({len(b)} crops) in {time.perf_counter() - t:.1f} s", flush=True)
        np.savez(target, **saved)
        print(f"{args.tag} {name}: {sum(len(b) for b in batches)} crops in {time.perf_counter() - t:.1f} s", flush=True)


def score(args) -> None:
    from posekit import registry
    from posekit.build import annotations_path
    from posekit.engines.onnxruntime import OnnxRuntimeEngine
    from posekit.evaluate import evaluate
    from posekit.families import of
    from posekit.pipeline import PoseEstimator
    from posekit.pose_models import TopDownModel

    out = Path(args.out)
    meta = json.loads((out / "meta.json").read_text())
    spec = registry.get(meta["model"])
    family = of(spec)
    like = OnnxRuntimeEngine(out / meta["variants"]["fp32"]["file"], threads=1)
    crops = np.load(out / "crops.npz")
    batches = [crops[f"b{i}"] for i in range(len(crops.files))]
    ann = annotations_path()
    speed = json.loads((out / "speed.json").read_text()) if (out / "speed.json").exists() else {}
    ref = None
    rows = []
    for tag in args.tags.split(","):
        for name in meta["variants"]:
            if args.only and name not in args.only.split(",") + ["fp32"]:
                continue
            path = out / f"outputs-{tag}-{name}.npz"
            if not path.exists():
                continue
            saved = np.load(path)
            done = min(len({k.split("_")[0] for k in saved.files}), args.batches or len(batches))
            outputs, decoded = {}, []
            for i, b in enumerate(batches[:done]):
                outs = [saved[f"b{i}_o{j}"] for j in range(len(like.output_names))]
                outputs[_key(b)] = outs
                kp, sc = family.decode(family.named(outs, like.output_names), b.shape[2:])
                decoded.append((kp, sc))
            ap = float("nan")
            if done == len(batches):
                est = PoseEstimator(det=meta["det"], pose=TopDownModel(Replay(like, outputs), spec), workers=1, threads=1)
                ap = evaluate(ann, ann.parent / "images", est, boxes=("detector",))["detector"]["AP"]
            kp = np.concatenate([d[0] for d in decoded])
            sc = np.concatenate([d[1] for d in decoded])
            if ref is None and name == "fp32":
                ref = (kp, sc)
            row = {"tag": tag, "variant": name, "crops": len(kp), "AP": round(ap, 4)}
            if ref is not None:
                n = len(kp)
                d = np.linalg.norm(kp - ref[0][:n], axis=-1)[ref[1][:n] > 0.3]
                row.update({"kp_px_median": round(float(np.median(d)), 2), "kp_px_p95": round(float(np.percentile(d, 95)), 2),
                            "score_abs_mean": round(float(np.abs(sc - ref[1][:n]).mean()), 4)})
            native = out / f"outputs-native-{name}.npz"
            if tag != "native" and native.exists():  # the same model on this CPU: what the ISA changes
                same = np.load(native)
                diff = [float(np.abs(saved[f"b{i}_o{j}"] - same[f"b{i}_o{j}"]).max())
                        for i in range(done) for j in range(len(like.output_names))]
                kn = np.concatenate([family.decode(family.named([same[f"b{i}_o{j}"] for j in range(len(like.output_names))],
                                                                like.output_names), b.shape[2:])[0]
                                     for i, b in enumerate(batches[:done])])
                row.update({"vs_native_output_max_abs": round(max(diff), 5),
                            "vs_native_kp_px_max": round(float(np.linalg.norm(kp - kn, axis=-1).max()), 3)})
            row.update(speed.get(name, {}))
            rows.append(row)
            print(json.dumps(row), flush=True)
    (out / "scores.json").write_text(json.dumps(rows, indent=2))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--model", default="movenet-thunder")
    a.add_argument("--det", default="rtmdet-nano-person")
    a.add_argument("--speed", action="store_true")
    a.add_argument("--repeats", type=int, default=30)
    b = sub.add_parser("run")
    b.add_argument("--tag", required=True)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--batches", type=int, help="only the first N recorded batches (AP then needs a full run)")
    d = sub.add_parser("speed")
    d.add_argument("--repeats", type=int, default=30)
    c = sub.add_parser("score")
    c.add_argument("--tags", default="native,avx2")
    c.add_argument("--batches", type=int, help="keypoint errors on the first N batches only (as a partial run)")
    for s in (a, b, c, d):
        s.add_argument("--out", required=True)
        s.add_argument("--only", help="comma-separated variants")
    args = p.parse_args()
    {"prepare": prepare, "run": run, "speed": speed, "score": score}[args.step](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
