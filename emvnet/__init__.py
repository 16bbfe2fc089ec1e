"""EMVNet: merging multi-exposure LDR brackets into linear HDR (Ren, Fan & Huang; see docs).

The package is the model library: image I/O, classical merges, the network, training and
evaluation. It knows nothing of web servers or queues (`service` and `worker` build on it).
Top-level names are imported on first use, so `import emvnet.frame` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emvnet.errors import EmvnetError
    from emvnet.frame import ExposureInfo, Frame
    from emvnet.infer import Enhancer
    from emvnet.merge.bracket import Bracket, make_bracket

__all__ = ["Bracket", "EmvnetError", "Enhancer", "ExposureInfo", "Frame", "make_bracket"]
__version__ = "0.1.0"

_HOMES = {
    "Bracket": "emvnet.merge.bracket",
    "make_bracket": "emvnet.merge.bracket",
    "EmvnetError": "emvnet.errors",
    "ExposureInfo": "emvnet.frame",
    "Frame": "emvnet.frame",
    "Enhancer": "emvnet.infer",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'emvnet' has no attribute {name!r}")
