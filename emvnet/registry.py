"""Named models: an explicit table, one small factory per name.

A model is anything that merges validated brackets: the classical OpenCV merges and the EMVNet
variants alike implement `Merger`. Names are registered by the modules that define them, listed
at the bottom of this file (no folder scanning); registering a name twice is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from emvnet.bracket import Bracket
from emvnet.errors import UnknownModelError

log = logging.getLogger(__name__)


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


AUTO = "auto"
# What "auto" means: the first of these that can be loaded. The trained fast network when its
# weights are installed, else the robust classical merge that needs none.
AUTO_ORDER = ("emvnet-fast-rgb", "weighted")

_MODELS: dict[str, ModelSpec] = {}
_loaded = False


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the table; a duplicate name is a programming error."""
    assert spec.name not in _MODELS, f"model {spec.name!r} is registered twice"
    _MODELS[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    """The spec of `name`, or UnknownModelError listing what exists."""
    _ensure_loaded()
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join([AUTO, *sorted(_MODELS)])
        raise UnknownModelError(f"unknown model {name!r}; available: {known}") from None


def load(name: str, device: str) -> tuple[ModelSpec, Merger]:
    """Build the merger of `name` on `device`; "auto" takes the first loadable of AUTO_ORDER."""
    if name != AUTO:
        spec = get(name)
        return spec, spec.build(device)
    for candidate in AUTO_ORDER:
        try:
            spec = get(candidate)
            return spec, spec.build(device)
        except UnknownModelError as exc:  # not registered, or no trained weights installed
            log.info("auto: %s unavailable (%s); trying the next model", candidate, exc)
    raise AssertionError("the last AUTO_ORDER entry must always load")


def names() -> list[str]:
    _ensure_loaded()
    return sorted(_MODELS)


def specs() -> list[ModelSpec]:
    return [_MODELS[n] for n in names()]


def _register_builtin() -> None:
    # The one place that lists which modules contribute models. The modules import this one for
    # `ModelSpec`, so they are imported on first use of the table rather than at import time.
    from emvnet import baselines, engine

    for spec in (*baselines.SPECS, *engine.SPECS):
        register(spec)


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        _register_builtin()
