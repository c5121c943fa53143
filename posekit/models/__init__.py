"""Networks posekit owns as PyTorch code, loaded with real pretrained weights, and the weight
readers they use. Which network a registry entry builds is its family's business
(`posekit.families`, ``torch_network``).

Needs torch (`pip install posekit[gpu]`); `import posekit` never imports this.
"""

from __future__ import annotations

import os

from posekit import registry


def build(name: str | registry.ModelSpec, weights: str | os.PathLike | None = None, download: bool = True):
    """The torch module for registry entry `name`, in eval mode, with its real weights loaded.

    weights: an explicit weight file or folder; otherwise the registry's search order applies.
    """
    from posekit import families

    spec = registry.resolve(name)
    return families.of(spec).build_torch(spec, weights=weights, download=download)
