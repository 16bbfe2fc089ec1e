"""Checkpoints: safetensors + JSON round-trip bit-exactly; missing weights are never replaced."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from emvnet import registry
from emvnet.errors import UnknownModelError
from emvnet.net import checkpoint
from emvnet.net.config import VARIANTS, ModelConfig, config_from_dict, config_to_dict, variant, with_volume
from emvnet.net.model import build_model


@pytest.mark.parametrize("name", ["emvnet-fast-rgb", "emvnet-paper-isp"])
def test_save_load_is_bit_exact(tmp_path: Path, name: str) -> None:
    """Every tensor and the config come back exactly, and the JSON names the variant."""
    model = build_model(name, seed=5)
    weights, meta = checkpoint.save(model, tmp_path / name, extra={"step": 7})
    assert weights.name == f"{name}.safetensors" and meta.name == f"{name}.json"
    doc = json.loads(meta.read_text())
    assert doc["variant"] == name and doc["format"] == checkpoint.FORMAT and doc["extra"] == {"step": 7}
    loaded = checkpoint.load(tmp_path / name)
    assert loaded.config == model.config
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_config_round_trip_keeps_ablation_switches() -> None:
    """A modified config (ablation switches, tuples, floats) survives the JSON round trip typed."""
    config = with_volume(variant("emvnet-paper-raw"), use_mask=False, exposures=(2, 4), dense_motion=True)
    back = config_from_dict(json.loads(json.dumps(config_to_dict(config))))
    assert back == config and isinstance(back.volume.exposures, tuple)


def test_checkpoint_written_before_the_prior_field_keeps_the_reference_prior(tmp_path: Path) -> None:
    """A checkpoint whose JSON names no prior was trained on the reference-first merge and loads
    with it; configs default to the weighted merge, as every variant does."""
    assert ModelConfig("x", "rgb").prior == "weighted"
    assert all(variant(name).prior == "weighted" for name in VARIANTS)
    model = build_model(replace(variant("emvnet-fast-raw"), prior="reference"), seed=2)
    _, meta = checkpoint.save(model, tmp_path / "old")
    doc = json.loads(meta.read_text())
    assert doc["config"].pop("prior") == "reference"
    doc["config"]["volume"]["saturation"] = 0.95**2.2  # a field such JSON carries and no code reads
    meta.write_text(json.dumps(doc))
    assert checkpoint.load(tmp_path / "old").config == model.config


def test_shipped_weights_load_with_the_weighted_prior() -> None:
    """The shipped JSON names the weighted prior (and carries the unread saturation level)."""
    for name in ("emvnet-fast-rgb", "emvnet-fast-raw", "emvnet-fast-isp"):
        doc = json.loads((checkpoint.WEIGHTS_DIR / f"{name}.json").read_text())
        assert doc["config"]["prior"] == "weighted"
        assert checkpoint.load(checkpoint.WEIGHTS_DIR / name).config == variant(name)


def test_unknown_config_field_is_refused() -> None:
    """A JSON config with an unknown field raises instead of being silently ignored."""
    data = config_to_dict(variant("emvnet-fast-rgb"))
    data["volume"]["warp_speed"] = 9
    with pytest.raises(ValueError, match="warp_speed"):
        config_from_dict(data)


def test_missing_weights_raise_unknown_model(tmp_path: Path) -> None:
    """Without installed weights a variant refuses to build: random weights never serve users."""
    with pytest.raises(UnknownModelError, match="no trained weights are installed for emvnet-fast-rgb"):
        checkpoint.load_installed("emvnet-fast-rgb", directory=tmp_path)
    if not checkpoint.installed("emvnet-paper-rgb"):
        with pytest.raises(UnknownModelError, match="no trained weights"):
            registry.get("emvnet-paper-rgb").build("cpu")


def test_installed_weights_load(tmp_path: Path) -> None:
    """Weights placed in the weights directory are found and loaded under their variant name."""
    model = build_model("emvnet-fast-raw", seed=2)
    checkpoint.save(model, tmp_path / "emvnet-fast-raw")
    loaded = checkpoint.load_installed("emvnet-fast-raw", directory=tmp_path)
    assert torch.equal(loaded.features.entry[0].weight, model.features.entry[0].weight)


def test_training_state_round_trips_without_pickle(tmp_path: Path) -> None:
    """Nested training states (int-keyed dicts, tuples, arrays, RNG states) survive save_state."""
    import random

    import numpy as np

    from emvnet.net.checkpoint import load_state, save_state

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = {
        "opt": opt.state_dict(),
        "rng": {"numpy": np.random.get_state(), "python": random.getstate(), "torch": torch.get_rng_state()},
        "best": None,
        "step": 7,
    }
    save_state(state, tmp_path / "s.state")
    back = load_state(tmp_path / "s.state")
    assert back["step"] == 7 and back["best"] is None
    assert back["rng"]["python"] == state["rng"]["python"]
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    np.testing.assert_array_equal(back["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert back["opt"]["param_groups"] == state["opt"]["param_groups"]
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], state["opt"]["state"][0]["exp_avg"])
    opt.load_state_dict(back["opt"])  # accepted as is
    raw = (tmp_path / "s.state").read_bytes()
    assert raw[8:9] == b"{", "a safetensors file: 8-byte header length, then a JSON header"


def test_weights_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EMVNET_WEIGHTS_DIR points the registry at weights installed outside the package."""
    name = "emvnet-fast-rgb"
    assert not checkpoint.installed(name, tmp_path)
    checkpoint.save(build_model(name), tmp_path / name)
    monkeypatch.setenv(checkpoint.WEIGHTS_DIR_ENV, str(tmp_path))
    assert checkpoint.weights_dir() == tmp_path
    assert checkpoint.installed(name)
    merger = registry.get(name).build("cpu")
    assert merger is not None


def test_saved_weights_are_world_readable(tmp_path: Path) -> None:
    """Exported files are copied into images run by a non-root user: 0644, not safetensors' 0600."""
    weights, meta = checkpoint.save(build_model("emvnet-fast-rgb"), tmp_path / "m")
    assert weights.stat().st_mode & 0o777 == 0o644 and meta.stat().st_mode & 0o044 == 0o044


def test_shipped_weights_load_and_are_small() -> None:
    """The weights in emvnet/weights load strictly into their variant and stay under 10 MB each."""
    shipped = sorted(checkpoint.WEIGHTS_DIR.glob("*.safetensors"))
    assert shipped, "emvnet/weights ships no network weights"
    for path in shipped:
        assert path.stat().st_size < 10 * 2**20, path
        model = checkpoint.load(path.with_suffix(""))
        assert model.config.name == path.stem
