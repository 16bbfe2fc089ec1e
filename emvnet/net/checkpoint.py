"""Checkpoint format: `<stem>.safetensors` (the state dict) next to `<stem>.json` (what it is).

The JSON names the format version, the variant and its full typed config (`config.config_to_dict`),
so a checkpoint rebuilds the exact network without code-side guessing; the safetensors file holds
only tensors (no pickle). Loading is strict: missing or unexpected tensors are an error, and values
round-trip bit-exactly.

Shipped weights live in `emvnet/weights/<variant>.safetensors` + `.json`; `load_installed` refuses
to serve a variant without them instead of falling back to random weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from emvnet.errors import UnknownModelError
from emvnet.net.config import config_from_dict, config_to_dict
from emvnet.net.model import EMVNet

FORMAT = "emvnet-checkpoint/1"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
# Operators can mount weights elsewhere (a volume, a model store) and point the library at them.
WEIGHTS_DIR_ENV = "EMVNET_WEIGHTS_DIR"


def weights_dir() -> Path:
    """Where installed weights are looked up: $EMVNET_WEIGHTS_DIR, else the package's weights/."""
    override = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(override) if override else WEIGHTS_DIR


def _paths(stem: str | Path) -> tuple[Path, Path]:
    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save(model: EMVNet, stem: str | Path, extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write the weights and the JSON config; `extra` (e.g. training step, data) goes into the JSON."""
    weights, meta = _paths(stem)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"format": FORMAT, "variant": model.config.name})
    os.chmod(weights, 0o644)  # safetensors writes 0600: the service's non-root user must read shipped files
    doc = {"format": FORMAT, "variant": model.config.name, "config": config_to_dict(model.config)}
    if extra:
        doc["extra"] = extra
    meta.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return weights, meta


def load(stem: str | Path, device: str | torch.device = "cpu") -> EMVNet:
    """Rebuild the network a checkpoint describes and load its weights (strict), in eval mode."""
    weights, meta = _paths(stem)
    doc = json.loads(meta.read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{meta}: format {doc.get('format')!r} is not {FORMAT!r}")
    config = config_from_dict(_read_as_written(doc["config"]))
    if doc.get("variant") != config.name:
        raise ValueError(f"{meta}: variant {doc.get('variant')!r} does not match its config {config.name!r}")
    model = EMVNet(config)
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.to(device).eval()


# Fields whose reading in checkpoint JSON differs from today's config: JSON that names no `prior`
# describes a network trained on the reference-first merge (the field came after it), and the
# volume's `saturation` is a level no code reads (the saturation masks come from `Bracket.saturated`).
LEGACY_PRIOR = "reference"
_UNREAD_VOLUME_FIELDS = ("saturation",)


def _read_as_written(data: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config dict as today's `config_from_dict` must read it to rebuild the
    network that was trained."""
    data = {"prior": LEGACY_PRIOR, **data}
    if isinstance(data.get("volume"), dict):
        data["volume"] = {k: v for k, v in data["volume"].items() if k not in _UNREAD_VOLUME_FIELDS}
    return data


def installed(name: str, directory: Path | None = None) -> bool:
    weights, meta = _paths((directory or weights_dir()) / name)
    return weights.is_file() and meta.is_file()


def load_installed(name: str, device: str | torch.device = "cpu", directory: Path | None = None) -> EMVNet:
    """The shipped weights of `name`, or UnknownModelError when none are installed."""
    directory = directory or weights_dir()
    if not installed(name, directory):
        raise UnknownModelError(
            f"no trained weights are installed for {name}; train them (emvnet train) and put "
            f"{name}.safetensors and {name}.json in {directory}, or choose a classical model"
        )
    model = load(directory / name, device)
    if model.config.name != name:
        raise UnknownModelError(f"{directory / name}.json describes {model.config.name}, not {name}")
    return model


# -- training state (no pickle) --
#
# A training checkpoint nests dicts (some with integer keys, as optimizer states have), lists,
# tuples, tensors, numpy arrays (numpy's RNG state) and scalars. `save_state` stores every tensor
# and array in one safetensors file and the structure as JSON in its metadata, so resuming never
# unpickles anything, even a checkpoint someone else handed over.

STATE_FORMAT = "emvnet-train-state/1"


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    assert obj is None or isinstance(obj, bool | int | float | str), f"cannot store {type(obj).__name__}"
    return obj


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy()
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__dict__"]}


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """Write a nested training state (tensors, arrays, scalars) without pickle."""
    tensors: dict[str, torch.Tensor] = {}
    structure = json.dumps(_encode(state, tensors), allow_nan=True)
    save_file(tensors, str(path), metadata={"format": STATE_FORMAT, "structure": structure})


def load_state(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read what `save_state` wrote; tensors land on `device`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"{path} is not an emvnet training state ({meta.get('format')!r})")
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    state = _decode(json.loads(meta["structure"]), tensors)
    assert isinstance(state, dict), "a training state is a dict"
    target = torch.device(device)
    for key in ("model", "ema", "discriminator"):  # optimizer states move with load_state_dict
        if isinstance(state.get(key), dict):
            state[key] = {k: v.to(target) for k, v in state[key].items()}
    return state
