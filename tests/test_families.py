"""The plug-in point: every model's knowledge lives in its family module, found through the
registry entry; a new family needs its module and its registry entry, nothing else."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from paths import COCO_IMAGES
from posekit import families, registry
from posekit.ops.crop import affine_crop, crop_to_image

PACKAGE = Path(__file__).resolve().parents[1] / "posekit"


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_model_has_a_family_of_its_task(name):
    spec = registry.get(name)
    family = families.of(spec)
    expected = ("top-down", "bottom-up") if spec.task == "pose" else ("detector",)
    assert family.kind in expected and family.name == spec.family and family.output_names


def test_unknown_family_fails_naming_it():
    with pytest.raises(ValueError, match="no-such-family"):
        families.get("no-such-family")


def _posekit_imports() -> dict[str, set[str]]:
    """Module -> the posekit modules it imports anywhere (top level or inside functions)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("posekit"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
        edges[name] = found & set(modules)
    return edges


def test_no_import_cycles_between_posekit_modules():
    # Lazy (in-function) imports count too: a circle of them is still a circle of knowledge.
    edges = _posekit_imports()
    seen: dict[str, int] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        seen[module] = 1
        for target in sorted(edges[module]):
            if seen.get(target) == 1:
                cycles.append(trail[trail.index(target):] + [target] if target in trail else [module, target])
            elif target not in seen:
                visit(target, trail + [target])
        seen[module] = 2

    for module in sorted(edges):
        if module not in seen:
            visit(module, [module])
    # a package importing its own submodule by import_module is not a static edge; the families
    # package and its members are the one expected pair (members import the base classes)
    cycles = [c for c in cycles if not set(c) <= {"posekit", "posekit.families"}]
    assert cycles == []


TOY_FAMILY = '''
"""A toy top-down family: one heatmap per keypoint at stride 4, decoded by plain argmax."""
import numpy as np
from posekit.families import TopDownFamily


def decode(outputs, input_size):
    heatmaps = outputs[0]
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    index = flat.argmax(-1)
    y, x = np.divmod(index, w)
    stride_y, stride_x = input_size[0] / h, input_size[1] / w
    keypoints = np.stack([(x + 0.5) * stride_x, (y + 0.5) * stride_y], -1).astype(np.float32)
    scores = 1 / (1 + np.exp(-flat.max(-1)))
    return keypoints, scores.astype(np.float32)


FAMILY = TopDownFamily(name="{name}", output_names=("heatmaps",), decode=decode)
'''


def _toy_onnx(path: Path, size: tuple[int, int], name: str, family: str) -> None:
    """A real ONNX pose network: one 4x4 stride-4 convolution to 17 heatmaps, with posekit metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(0, 0.01, (17, 3, 4, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["heatmaps"], strides=[4, 4])], "toy",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, *size])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["batch", 17, size[0] // 4, size[1] // 4])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {"posekit.model": name, "posekit.family": family, "posekit.task": "pose",
            "posekit.input_size": json.dumps(list(size)), "posekit.colour": "RGB",
            "posekit.mean": json.dumps([123.675, 116.28, 103.53]), "posekit.std": json.dumps([58.395, 57.12, 57.375])}
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def test_a_new_family_plugs_in_through_its_module_and_registry_entry_alone(tmp_path, monkeypatch):
    family_name = "posekit_toy_family"
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / f"{family_name}.py").write_text(textwrap.dedent(TOY_FAMILY.replace("{name}", family_name)))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    size = (128, 96)
    _toy_onnx(tmp_path / "cache" / "toy-pose.onnx", size, "toy-pose", family_name)
    monkeypatch.setenv("POSEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    registry.register(registry.ModelSpec(
        name="toy-pose", family=family_name, task="pose", input_size=size, colour="RGB",
        mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
        files=(registry.WeightFile("toy-pose.onnx"),), source="made by this test", licence="-", accuracy="-"))

    from posekit.engines.onnxruntime import OnnxRuntimeEngine
    from posekit.io import read_image
    from posekit.pipeline import PoseEstimator

    estimator = PoseEstimator(pose="toy-pose", precision="fp32", workers=1)
    assert estimator.pose.family.name == family_name and estimator.crop_shape == "square"  # not any_size
    image = read_image(sorted(COCO_IMAGES.glob("*.jpg"))[0])
    people = estimator.detector(image)
    assert len(people) >= 1
    got = estimator.estimate_boxes([image], [people])[0]

    # the same by hand: crop, normalise as the metadata says, run, decode, map back
    crops, transform = affine_crop(image, people.boxes, size, 1.25)
    x = (crops[..., ::-1].astype(np.float32) - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]
    heatmaps = OnnxRuntimeEngine(tmp_path / "cache" / "toy-pose.onnx")(x.transpose(0, 3, 1, 2).astype(np.float32))[0]
    flat = heatmaps.reshape(len(x), 17, -1)
    y, xi = np.divmod(flat.argmax(-1), size[1] // 4)
    want = crop_to_image(np.stack([(xi + 0.5) * 4, (y + 0.5) * 4], -1).astype(np.float32), transform)
    order = [int(np.argmin(np.abs(people.boxes - b).sum(1))) for b in got.boxes]
    np.testing.assert_allclose(got.keypoints, want[order], atol=1e-3)
