"""What a named model is: the `Merger` protocol and the `ModelSpec` that builds one.

Both the classical merges (`emvnet.merge.classical`) and the network engine (`emvnet.net.engine`)
describe their models with `ModelSpec`; `emvnet.registry` collects the specs into the table of
names. Living below both sides, this module lets each import it without importing the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from emvnet.io.raw import RawMode
from emvnet.merge.bracket import Bracket


class Merger(Protocol):
    """Merges brackets of one shape into linear HDR.

    `merge` returns one float32 (H, W, C_out) array per bracket, linear, in the reference frame's
    units (1.0 = the reference's clipping level) and aligned to the reference. The brackets handed
    to one call share shape, frame count and layout (the caller groups them).
    """

    def merge(self, brackets: Sequence[Bracket]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str  # one line for `emvnet models` and --help
    kind: Literal["classical", "network"]
    input_layout: Literal["rgb", "rggb"]  # what frames it merges: RGB, or packed Bayer raw
    build: Callable[[str], Merger]  # device string ("cpu", "cuda", "cuda:1") -> a loaded merger

    @property
    def raw_mode(self) -> RawMode:
        """How camera raw files are decoded for this model: packed Bayer for rggb, else demosaiced."""
        return "packed" if self.input_layout == "rggb" else "rgb"
