"""Read OpenVINO IR v10/v11 models (``model.xml`` + ``model.bin``) with numpy and the standard library.

An IR is an XML graph (``<layers>``: id, name, type, version, a ``<data>`` element of string
attributes, ``<input>``/``<output>`` ports with their dims and precision; ``<edges>``: from-layer/
from-port -> to-layer/to-port) and a ``.bin`` file holding every ``Const`` layer's bytes at the
``offset``/``size`` its ``<data>`` names, in its ``element_type``.

API (stable; the IR -> ONNX converter and `posekit.models.openvino_ir` build on it):

    model = load_ir("tinypose-256x192/model.xml")        # .bin beside it, or load_ir(xml, bin)
    model.layers                  # list[Layer], topological order (ties kept in XML order)
    layer = model.layer(3)        # by id;  model.by_type("Convolution") -> list[Layer]
    layer.type, layer.version, layer.name, layer.data        # data: dict[str, str], as in the XML
    layer.inputs, layer.outputs   # list[Port]: port.id, port.shape (tuple, -1 = dynamic),
                                  #   port.precision ("FP32", ...), port.names (tuple of str)
    model.edges                   # list[Edge(from_layer, from_port, to_layer, to_port)]
    model.sources(layer)          # [(from_layer_id, from_port_id)] feeding layer.inputs, in port order
    model.consumers(layer_id)     # [Edge] leaving a layer
    model.constants[layer.id]     # np.ndarray for every Const layer, dtype as stored (f16 stays f16)
    model.constant(layer_id, upcast=True)   # the same, floats as float32
    model.parameters, model.results         # the graph's input / output layers (topological order)
    model.version                 # the IR version (int)

Element types: f16, f32, f64, bf16 (returned as float32), i4/u4/u1 are refused; i8, i16, i32,
i64, u8, u16, u32, u64, boolean. Every problem raises `IRFormatError` with one line naming the
file and what was expected versus found: missing or truncated ``.bin``, a ``.bin`` that is not
the one the XML was written with (its length differs from the end of the last constant), a Const
whose shape does not match its byte size, unparseable XML, an unknown element type.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["IRFormatError", "Port", "Layer", "Edge", "IRModel", "load_ir", "ir_files", "ELEMENT_TYPES"]

# IR element_type -> numpy dtype of the stored bytes (little-endian, as OpenVINO writes them)
ELEMENT_TYPES: dict[str, np.dtype] = {
    "f16": np.dtype("<f2"),
    "f32": np.dtype("<f4"),
    "f64": np.dtype("<f8"),
    "bf16": np.dtype("<u2"),  # decoded to float32 below
    "i8": np.dtype("i1"),
    "i16": np.dtype("<i2"),
    "i32": np.dtype("<i4"),
    "i64": np.dtype("<i8"),
    "u8": np.dtype("u1"),
    "u16": np.dtype("<u2"),
    "u32": np.dtype("<u4"),
    "u64": np.dtype("<u8"),
    "boolean": np.dtype("?"),
}


class IRFormatError(ValueError):
    """An OpenVINO IR file is missing, unparseable, truncated, or inconsistent with its other half."""


@dataclass(frozen=True)
class Port:
    """One input or output port. `shape` has -1 for a dynamic dim; `precision` as in the XML ("FP32",
    "FP16", "I64", ...; "" when absent); `names` are the tensor names the port carries."""

    id: int
    shape: tuple[int, ...]
    precision: str = ""
    names: tuple[str, ...] = ()


@dataclass
class Layer:
    id: int
    name: str
    type: str
    version: str
    data: dict[str, str] = field(default_factory=dict)
    inputs: list[Port] = field(default_factory=list)
    outputs: list[Port] = field(default_factory=list)

    def output(self, port_id: int) -> Port:
        for p in self.outputs:
            if p.id == port_id:
                return p
        raise KeyError(f"layer {self.id} ({self.name}) has no output port {port_id}")


@dataclass(frozen=True)
class Edge:
    from_layer: int
    from_port: int
    to_layer: int
    to_port: int


@dataclass
class IRModel:
    xml_path: Path
    bin_path: Path | None
    version: int
    name: str
    layers: list[Layer]
    edges: list[Edge]
    constants: dict[int, np.ndarray]
    _by_id: dict[int, Layer] = field(repr=False, default_factory=dict)
    _into: dict[int, dict[int, tuple[int, int]]] = field(repr=False, default_factory=dict)
    _out_of: dict[int, list[Edge]] = field(repr=False, default_factory=dict)

    def __post_init__(self):
        self._by_id = {l.id: l for l in self.layers}
        self._into, self._out_of = {}, {}
        for e in self.edges:
            self._into.setdefault(e.to_layer, {})[e.to_port] = (e.from_layer, e.from_port)
            self._out_of.setdefault(e.from_layer, []).append(e)

    def layer(self, layer_id: int) -> Layer:
        try:
            return self._by_id[layer_id]
        except KeyError:
            raise KeyError(f"{self.xml_path}: no layer with id {layer_id}") from None

    def by_type(self, type_: str) -> list[Layer]:
        return [l for l in self.layers if l.type == type_]

    def sources(self, layer: Layer | int) -> list[tuple[int, int]]:
        """(from_layer_id, from_port_id) feeding each of the layer's input ports, in port order."""
        layer = layer if isinstance(layer, Layer) else self.layer(layer)
        into = self._into.get(layer.id, {})
        return [into[p.id] for p in layer.inputs if p.id in into]

    def consumers(self, layer_id: int) -> list[Edge]:
        return list(self._out_of.get(layer_id, []))

    def constant(self, layer_id: int, upcast: bool = False) -> np.ndarray:
        """A Const layer's array as stored, or with `upcast` its float types as float32."""
        arr = self.constants[layer_id]
        if upcast and arr.dtype.kind == "f" and arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        return arr

    @property
    def parameters(self) -> list[Layer]:
        return self.by_type("Parameter")

    @property
    def results(self) -> list[Layer]:
        return self.by_type("Result")


def ir_files(path: str | os.PathLike) -> tuple[Path, Path] | None:
    """(xml, bin) when `path` is an IR (an .xml, or a folder holding exactly one .xml), else None."""
    path = Path(path)
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            return None
        path = xmls[0]
    if path.suffix.lower() != ".xml" or not path.is_file():
        return None
    return path, path.with_suffix(".bin")


def _dims(port: ET.Element) -> tuple[int, ...]:
    out = []
    for d in port.findall("dim"):
        text = (d.text or "").strip()
        out.append(int(text) if text.lstrip("-").isdigit() else -1)  # "?" or "1..10": dynamic
    return tuple(out)


def _ports(parent: ET.Element | None) -> list[Port]:
    if parent is None:
        return []
    ports = []
    for p in parent.findall("port"):
        names = tuple(n.strip() for n in p.get("names", "").split(",") if n.strip())
        ports.append(Port(int(p.get("id")), _dims(p), p.get("precision", ""), names))
    return ports


def _shape_attr(text: str, xml_path: Path, name: str) -> tuple[int, ...]:
    text = text.strip()
    if not text:
        return ()
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise IRFormatError(f"{xml_path}: Const {name!r} has shape {text!r}, expected comma-separated integers") from None


def _topological(layers: list[Layer], edges: list[Edge], xml_path: Path) -> list[Layer]:
    order = {l.id: i for i, l in enumerate(layers)}
    indeg = {l.id: 0 for l in layers}
    succ: dict[int, list[int]] = {l.id: [] for l in layers}
    for e in edges:
        for end in (e.from_layer, e.to_layer):
            if end not in indeg:
                raise IRFormatError(f"{xml_path}: an edge names layer id {end}, which the XML does not define")
        succ[e.from_layer].append(e.to_layer)
        indeg[e.to_layer] += 1
    import heapq

    ready = [(order[i], i) for i, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    by_id = {l.id: l for l in layers}
    out = []
    while ready:
        _, i = heapq.heappop(ready)
        out.append(by_id[i])
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(ready, (order[j], j))
    if len(out) != len(layers):
        raise IRFormatError(f"{xml_path}: the graph has a cycle: {len(layers) - len(out)} of {len(layers)} layers unreachable in topological order")
    return out


def load_ir(xml_path: str | os.PathLike, bin_path: str | os.PathLike | None = None) -> IRModel:
    """Parse an IR; `bin_path` defaults to the .xml's name with .bin. See the module docstring."""
    xml_path = Path(xml_path)
    if xml_path.is_dir():
        found = ir_files(xml_path)
        if found is None:
            raise IRFormatError(f"{xml_path}: expected a folder with exactly one .xml, found {len(list(xml_path.glob('*.xml')))}")
        xml_path = found[0]
    if not xml_path.is_file():
        raise IRFormatError(f"{xml_path}: no such IR .xml file")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise IRFormatError(f"{xml_path}: not parseable XML ({exc})") from None
    if root.tag != "net":
        raise IRFormatError(f"{xml_path}: expected an OpenVINO IR <net> root element, found <{root.tag}>")
    try:
        version = int(root.get("version", "0"))
    except ValueError:
        version = 0
    if version < 10:
        raise IRFormatError(f"{xml_path}: expected IR version 10 or 11, found {root.get('version')!r}")

    layers: list[Layer] = []
    try:
        for el in root.iterfind("layers/layer"):
            data_el = el.find("data")
            layers.append(Layer(
                id=int(el.get("id")),
                name=el.get("name", ""),
                type=el.get("type", ""),
                version=el.get("version", ""),
                data=dict(data_el.attrib) if data_el is not None else {},
                inputs=_ports(el.find("input")),
                outputs=_ports(el.find("output")),
            ))
        edges = [Edge(int(e.get("from-layer")), int(e.get("from-port")), int(e.get("to-layer")), int(e.get("to-port")))
                 for e in root.iterfind("edges/edge")]
    except (TypeError, ValueError) as exc:
        raise IRFormatError(f"{xml_path}: a layer, port or edge has a missing or non-integer id ({exc})") from None
    if not layers:
        raise IRFormatError(f"{xml_path}: expected <layers> with at least one <layer>, found none")
    layers = _topological(layers, edges, xml_path)

    consts = [l for l in layers if l.type == "Const"]
    constants: dict[int, np.ndarray] = {}
    bin_file: Path | None = None
    if consts:
        bin_file = Path(bin_path) if bin_path is not None else xml_path.with_suffix(".bin")
        if not bin_file.is_file():
            raise IRFormatError(f"{bin_file}: missing; {xml_path.name} needs it for {len(consts)} constants")
        blob = bin_file.read_bytes()
        end_of_data = 0
        for l in consts:
            d = l.data
            et = d.get("element_type", "")
            if et not in ELEMENT_TYPES:
                raise IRFormatError(f"{xml_path}: Const {l.name!r} has element_type {et!r}, expected one of {', '.join(ELEMENT_TYPES)}")
            shape = _shape_attr(d.get("shape", ""), xml_path, l.name)
            try:
                offset, size = int(d["offset"]), int(d["size"])
            except (KeyError, ValueError):
                raise IRFormatError(f"{xml_path}: Const {l.name!r} needs integer offset and size, found {d.get('offset')!r}, {d.get('size')!r}") from None
            dtype = ELEMENT_TYPES[et]
            need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if need != size:
                raise IRFormatError(f"{xml_path}: Const {l.name!r} of shape {list(shape)} {et} needs {need:,} bytes, its size says {size:,}")
            if offset + size > len(blob):
                raise IRFormatError(f"{bin_file}: holds {len(blob):,} bytes, Const {l.name!r} in {xml_path.name} needs bytes {offset:,}..{offset + size:,} (truncated, or not this XML's .bin)")
            end_of_data = max(end_of_data, offset + size)
            arr = np.frombuffer(blob, dtype=dtype, count=need // dtype.itemsize, offset=offset).reshape(shape).copy()
            if et == "bf16":
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            constants[l.id] = arr
        if end_of_data != len(blob):
            raise IRFormatError(f"{bin_file}: holds {len(blob):,} bytes, {xml_path.name}'s constants end at byte {end_of_data:,} (not this XML's .bin?)")
    return IRModel(xml_path=xml_path, bin_path=bin_file, version=version, name=root.get("name", ""),
                   layers=layers, edges=edges, constants=constants)
