"""One runner for every top-down pose family: person crops in, keypoints in crop pixels out.

Preprocessing (input size, colour order, mean/std) comes from the artefact's own metadata
(``posekit.*``, written by `posekit.export` and carried by `posekit.build` into TensorRT plans
and AOTInductor packages); a torch network, which carries none, runs with its registry entry's.
Decoding, the flip test and whether crops may take any shape come from the family.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from posekit import families
from posekit.ops.crop import affine_crop
from posekit.registry import ModelSpec

log = logging.getLogger(__name__)

# What posekit's artefacts record and the runner builds its preprocessing from.
REQUIRED_META = ("posekit.input_size", "posekit.colour", "posekit.mean", "posekit.std")


def preprocessing(metadata: dict[str, str], spec: ModelSpec | None, source: str) -> dict[str, Any]:
    """input_size (h, w), colour, mean, std, family and model name, from an artefact's metadata,
    or from `spec` when the artefact carries none (a torch module)."""
    if all(k in metadata for k in REQUIRED_META):
        return {"model": metadata.get("posekit.model", spec.name if spec else "?"),
                "family": metadata.get("posekit.family") or (spec.family if spec else None),
                "input_size": tuple(int(v) for v in json.loads(metadata["posekit.input_size"])),
                "colour": metadata["posekit.colour"].upper(),
                "mean": np.asarray(json.loads(metadata["posekit.mean"]), np.float32),
                "std": np.asarray(json.loads(metadata["posekit.std"]), np.float32)}
    if spec is None:
        missing = [k for k in REQUIRED_META if k not in metadata]
        raise ValueError(f"{source}: expected posekit metadata {', '.join(REQUIRED_META)}; missing {', '.join(missing)}")
    log.debug("%s carries no posekit metadata: preprocessing from the registry entry %s", source, spec.name)
    return {"model": spec.name, "family": spec.family, "input_size": tuple(spec.input_size), "colour": spec.colour,
            "mean": np.asarray(spec.mean, np.float32), "std": np.asarray(spec.std, np.float32)}


class TopDownModel:
    """A top-down pose network on an engine.

    ``model(crops)``: (N, h, w, 3) uint8 BGR crops -> keypoints (N, K, 2) float32 in crop pixels
    (x then y), scores (N, K). Crops are (h, w) = `input_size`, or any multiple of 32 when
    `any_size` (the engine takes any height and width and the family allows it).

    engine: a posekit engine (`posekit.runtime.make_engine`)
    spec:   the registry entry; needed only when the artefact carries no posekit metadata, and
            checked against the metadata when both are given
    flip:   the flip test: each crop and its mirror image run together, the family merges them
    """

    max_batch = None

    def __init__(self, engine: Any, spec: ModelSpec | None = None, flip: bool = False) -> None:
        source = str(getattr(engine, "path", None) or engine)
        pre = preprocessing(getattr(engine, "metadata", {}) or {}, spec, source)
        if spec is not None and pre["model"] != spec.name:
            raise ValueError(f"{source}: expected an export of {spec.name}, its metadata says {pre['model']}")
        self.engine = engine
        self.name = pre["model"]
        self.family = families.get(pre["family"])
        if self.family.kind != "top-down":
            raise ValueError(f"{self.name} is a {self.family.kind} model, not a top-down pose model")
        if flip and self.family.merge_flip is None:
            raise ValueError(f"{self.name}: family {self.family.name} has no flip test")
        self.flip = bool(flip)
        self.input_size = pre["input_size"]  # height, width
        self.model_colour = pre["colour"]
        self.mean, self.std = pre["mean"], pre["std"]
        self._normalise = bool(np.any(self.mean != 0) or np.any(self.std != 1))
        self._inv_std = (1.0 / self.std).astype(np.float32)
        self.crop = self.family.crop or affine_crop  # fn(image, boxes, (h, w), scale) -> (crops, CropTransform)

    @property
    def any_size(self) -> bool:
        """Whether crops may take any height and width (the family allows it and the engine takes it)."""
        shape = self.engine.inputs[0].shape
        return self.family.any_size and len(shape) == 4 and shape[2] is None and shape[3] is None

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """(N, h, w, 3) uint8 BGR -> (N, 3, h, w) float32, in the network's colour order and normalisation."""
        x = crops[..., ::-1] if self.model_colour == "RGB" else crops
        x = x.transpose(0, 3, 1, 2).astype(np.float32)  # one copy: NHWC uint8 -> NCHW float32
        if self._normalise:
            x -= self.mean[None, :, None, None]
            x *= self._inv_std[None, :, None, None]
        return x

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(crops) == 0:
            return np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32)
        x = self.preprocess(crops)
        n = len(x)
        if self.flip:
            x = np.concatenate([x, x[..., ::-1]])
        outputs = self.family.named(self.engine(x), self.engine.output_names)
        outputs = [np.asarray(o, np.float32) for o in outputs]
        if self.flip:
            outputs = self.family.merge_flip([o[:n] for o in outputs], [o[n:] for o in outputs], self.family.flip_pairs)
        keypoints, scores = self.family.decode(outputs, crops.shape[1:3])
        return np.asarray(keypoints, np.float32), np.asarray(scores, np.float32)

    def __repr__(self) -> str:
        return f"TopDownModel({self.name!r}, engine={self.engine!r}{', flip' if self.flip else ''})"
