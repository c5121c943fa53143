"""Read TensorFlow.js graph models (``model.json`` + ``.bin`` shards) with numpy and json alone.

A graph model holds the TensorFlow graph (``modelTopology.node``: name, op, inputs, attrs) and a
weights manifest: groups of weights, each group stored as the concatenation of its shard files.
Weights may be stored quantised (``quantization: {dtype: float16}`` or affine
``{dtype: uint8|uint16, scale, min}``, dequantised as ``q * scale + min``).

    model = load_graph_model("movenet-thunder/model.json")
    model.nodes[0].op, model.weights["...Conv2D_weights"].shape
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# manifest dtype -> numpy dtype of the stored bytes
_DTYPES = {
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
    "float16": np.float16,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "int8": np.int8,
    "int16": np.int16,
}

_TF_TYPES = {
    "DT_FLOAT": "float32",
    "DT_HALF": "float16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_BOOL": "bool",
    "DT_UINT8": "uint8",
    "DT_STRING": "string",
}


class TfjsFormatError(ValueError):
    """A TF.js model file is missing, truncated, or inconsistent with its manifest or graph."""


@dataclass
class Node:
    """One graph node. `inputs` keep TF's spelling (``name``, ``name:1``, ``^control``);
    `attrs` are decoded to Python values (ints, floats, bools, str, dtype names, lists, shapes)."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)


@dataclass
class GraphModel:
    path: Path
    nodes: list[Node]
    weights: dict[str, np.ndarray]
    signature: dict
    meta: dict

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"{self.path}: no node named {name!r}")

    def by_op(self, op: str) -> list[Node]:
        return [n for n in self.nodes if n.op == op]


def model_files(path: str | os.PathLike) -> list[Path] | None:
    """[model.json, *its shards] when `path` is a TF.js model (a model.json or a folder with one), else None."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.json"
    if path.suffix != ".json" or not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text()).get("weightsManifest", [])
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return [path]
    return [path, *(path.parent / p for group in manifest for p in group.get("paths", []))]


def load_graph_model(path: str | os.PathLike) -> GraphModel:
    """Read `path` (a ``model.json``, or the folder holding one) and every weight it names.

    Raises TfjsFormatError naming the file and what was expected versus found.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.json"
    if not path.is_file():
        raise TfjsFormatError(f"no TF.js model at {path}")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TfjsFormatError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or "modelTopology" not in doc or "weightsManifest" not in doc:
        found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise TfjsFormatError(f"{path}: expected a TF.js graph model with modelTopology and weightsManifest, found {found}")
    if doc.get("format", "graph-model") != "graph-model":
        raise TfjsFormatError(f"{path}: expected format 'graph-model', found {doc.get('format')!r}")

    nodes = [_decode_node(raw, path) for raw in doc["modelTopology"].get("node", [])]
    weights = read_weights(doc["weightsManifest"], path.parent, label=path)
    _check_consts(nodes, weights, path)
    meta = {k: v for k, v in doc.items() if k not in ("modelTopology", "weightsManifest", "signature")}
    return GraphModel(path=path, nodes=nodes, weights=weights, signature=doc.get("signature", {}), meta=meta)


def read_weights(manifest: list[dict], folder: Path, label: str | os.PathLike = "model.json") -> dict[str, np.ndarray]:
    """Decode every weight of a weights manifest whose shards lie in `folder`."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        shards = [folder / p for p in group.get("paths", [])]
        missing = [s for s in shards if not s.is_file()]
        if missing:
            raise TfjsFormatError(
                f"{label}: weight shard {missing[0].name} is missing (expected at {missing[0]})"
            )
        entries = group.get("weights", [])
        needed = sum(_stored_nbytes(w, label) for w in entries)
        have = sum(s.stat().st_size for s in shards)
        if have != needed:
            names = ", ".join(s.name for s in shards)
            holds = "holds" if len(shards) == 1 else "hold in all"
            raise TfjsFormatError(f"{names} {holds} {have:,} bytes, the manifest needs {needed:,}")
        buffer = b"".join(s.read_bytes() for s in shards)
        offset = 0
        for w in entries:
            size = _stored_nbytes(w, label)
            weights[w["name"]] = _decode_weight(w, buffer[offset:offset + size])
            offset += size
    return weights


def _stored_nbytes(w: dict, label) -> int:
    stored = (w.get("quantization") or {}).get("dtype", w.get("dtype"))
    if stored not in _DTYPES:
        raise TfjsFormatError(f"{label}: weight {w.get('name')!r} has dtype {stored!r}; supported: {', '.join(_DTYPES)}")
    return int(np.prod(w.get("shape", []), dtype=np.int64)) * np.dtype(_DTYPES[stored]).itemsize


def _decode_weight(w: dict, data: bytes) -> np.ndarray:
    shape = tuple(int(d) for d in w.get("shape", []))
    quant = w.get("quantization")
    target = np.dtype(_DTYPES[w["dtype"]])
    if not quant:
        return np.frombuffer(data, dtype=target).reshape(shape).copy()
    q = np.frombuffer(data, dtype=_DTYPES[quant["dtype"]]).reshape(shape)
    if quant["dtype"] == "float16":
        return q.astype(target)
    if "scale" in quant and "min" in quant:
        # TF.js dequantises in float32: q * scale + min
        values = q.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
        original = quant.get("original_dtype", w["dtype"])
        return np.round(values).astype(_DTYPES[original]) if original == "int32" else values.astype(_DTYPES[original])
    raise TfjsFormatError(f"weight {w['name']!r}: {quant['dtype']} quantisation without scale and min")


def _check_consts(nodes: list[Node], weights: dict[str, np.ndarray], path: Path) -> None:
    names = {n.name for n in nodes}
    for node in nodes:
        for ref in node.inputs:
            source = ref.lstrip("^").split(":")[0]
            if source not in names:
                raise TfjsFormatError(f"{path}: node {node.name!r} reads {source!r}, which is not in the graph")
    consts = {n.name: n for n in nodes if n.op == "Const"}
    missing = [name for name in consts if name not in weights]
    if missing:
        raise TfjsFormatError(
            f"{path}: {len(missing)} graph constant(s) have no weight in the manifest, e.g. {missing[0]!r}"
        )
    extra = [name for name in weights if name not in consts]
    if extra:
        raise TfjsFormatError(f"{path}: {len(extra)} manifest weight(s) are not in the graph, e.g. {extra[0]!r}")
    for name, node in consts.items():
        want = node.attrs.get("value")
        if isinstance(want, tuple) and want != tuple(weights[name].shape):
            raise TfjsFormatError(
                f"{path}: constant {name!r} has shape {want} in the graph, {tuple(weights[name].shape)} in the manifest"
            )


def _decode_node(raw: dict, path: Path) -> Node:
    try:
        return Node(
            name=raw["name"],
            op=raw["op"],
            inputs=list(raw.get("input", [])),
            attrs={k: _decode_attr(v) for k, v in raw.get("attr", {}).items()},
        )
    except KeyError as exc:
        raise TfjsFormatError(f"{path}: a graph node lacks {exc}: {json.dumps(raw)[:200]}") from None


def _decode_attr(value: dict):
    """TF AttrValue (JSON form) -> Python. A tensor attribute becomes its shape (values live in the manifest)."""
    if "list" in value:
        items = value["list"]
        for key in ("i", "f", "b", "s", "type", "shape"):
            if key in items:
                return [_decode_attr({key: v}) for v in items[key]]
        return []
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "s" in value:
        raw = base64.b64decode(value["s"])
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return raw
    if "type" in value:
        return _TF_TYPES.get(value["type"], value["type"])
    if "shape" in value:
        return _shape(value["shape"])
    if "tensor" in value:
        return _shape(value["tensor"].get("tensorShape", {}))
    if "func" in value:
        return value["func"].get("name")
    return None


def _shape(proto: dict) -> tuple[int, ...] | None:
    if proto.get("unknownRank"):
        return None
    return tuple(int(d.get("size", -1)) for d in proto.get("dim", []))
