"""Named models: an explicit table, one small factory per name.

A model is anything that merges validated brackets: the classical OpenCV merges and the EMVNet
variants alike implement `Merger`. Names are registered by the modules that define them, listed
at the bottom of this file (no folder scanning); registering a name twice is an error.
"""

from __future__ import annotations

import logging

from emvnet.errors import UnknownModelError
from emvnet.merge.merger import Merger, ModelSpec

__all__ = ["AUTO", "AUTO_ORDER", "Merger", "ModelSpec", "get", "load", "names", "register", "specs"]

log = logging.getLogger(__name__)


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
    # The one place that lists which modules contribute models. They are imported on first use of
    # the table, so importing the registry does not load torch.
    from emvnet.merge import classical
    from emvnet.net import engine

    for spec in (*classical.SPECS, *engine.SPECS):
        register(spec)


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        _register_builtin()
