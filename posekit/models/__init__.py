"""Networks posekit owns as PyTorch code, loaded with real pretrained weights.

Needs the torch extra (`pip install posekit[torch]`); `import posekit` never imports this.
"""

from __future__ import annotations

import os
from importlib import import_module

from posekit import registry

# registry family -> (module under posekit.models, builder function)
FAMILIES: dict[str, tuple[str, str]] = {
    "movenet": ("movenet", "build_movenet"),
    "movenet_multipose": ("movenet_multipose", "build_movenet_multipose"),
    "yolox": ("yolox", "build_yolox"),
}


def build(name: str, weights: str | os.PathLike | None = None, download: bool = True):
    """The torch module for registry entry `name`, in eval mode, with its real weights loaded.

    weights: an explicit weight file or folder; otherwise the registry's search order applies.
    """
    spec = registry.get(name)
    try:
        module_name, builder = FAMILIES[spec.family]
    except KeyError:
        raise ValueError(
            f"{name} ({spec.family}) has no PyTorch implementation in posekit; "
            f"families with one: {', '.join(sorted(FAMILIES))}"
        ) from None
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"building {name} in PyTorch needs torch: pip install 'posekit[torch]' torch"
        ) from exc
    module = import_module(f"posekit.models.{module_name}")
    return getattr(module, builder)(spec, weights=weights, download=download)
