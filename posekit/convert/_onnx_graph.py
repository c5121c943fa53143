"""A small ONNX graph builder shared by the converters: numpy constants in, a checked ModelProto out."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

OPSET = 17


class GraphBuilder:
    """Collects nodes and initializers; names are made unique with a counter.

        g = GraphBuilder()
        y = g.node("Relu", [x])
        w = g.const(weights, "conv1.weight")
    """

    def __init__(self) -> None:
        from onnx import helper

        self._helper = helper
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()
        self._consts: dict[int, str] = {}

    def unique(self, name: str) -> str:
        base, i = name, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        self._names.add(name)
        return name

    def const(self, value: np.ndarray, name: str = "const") -> str:
        from onnx import numpy_helper

        value = np.asarray(value)
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name=name))
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, outputs: int = 1, **attrs) -> str | list[str]:
        """Add one node; returns its output name (or names when `outputs` > 1)."""
        name = self.unique(name or op)
        outs = [name] if outputs == 1 else [self.unique(f"{name}:{i}") for i in range(outputs)]
        self.nodes.append(self._helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def model(self, inputs: list[tuple[str, list]], outputs: list[tuple[str, list]], graph_name: str,
              opset: int = OPSET, rename: dict[str, str] | None = None):
        """inputs/outputs: (name, shape) float32 tensors; `rename` maps internal names to output names."""
        from onnx import TensorProto, checker, helper

        nodes = self.nodes
        if rename:  # give the producing nodes' outputs the public names
            for node in nodes:
                node.output[:] = [rename.get(o, o) for o in node.output]
                node.input[:] = [rename.get(i, i) for i in node.input]
        graph = helper.make_graph(
            nodes, graph_name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
            initializer=self.initializers,
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="posekit.convert")
        proto.ir_version = 8  # opset 17; readable by every ONNX Runtime posekit supports
        checker.check_model(proto)
        return proto


@dataclasses.dataclass(frozen=True)
class Conversion:
    """What a format's converter hands back: the graph, and the independent numpy evaluation it is checked against."""

    proto: object  # onnx.ModelProto, posekit metadata not yet added
    reference: Callable[[np.ndarray], dict[str, np.ndarray]]  # (B, 3, H, W) float32 0..255 -> {output: array}
    reference_label: str
    output_layout: str  # export._metadata reads it as a model's output_layout
    converter: str
    normalises_inside: bool = False  # the graph applies spec.mean/std itself (then the metadata says 0 and 1)
