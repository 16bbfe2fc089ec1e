"""Device names: one reading for inference, the engine and training; absent devices are typed errors."""

from __future__ import annotations

import pytest
import torch

from emvnet.device import is_device_name, resolve_device, torch_device
from emvnet.errors import DeviceError


def test_device_names_are_read_one_way() -> None:
    """cpu, cuda, cuda:N and auto are names; anything else is not, and resolving it says so."""
    assert all(is_device_name(d) for d in ("cpu", "cuda", "cuda:0", "cuda:12", "auto"))
    assert not any(is_device_name(d) for d in ("tpu", "cuda:", "cuda:x", "cpu:0", "CUDA", ""))
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_devices_resolve_to_what_is_here() -> None:
    """cpu is itself, auto is CUDA only where it exists, and an absent CUDA device is a DeviceError."""
    assert resolve_device("cpu") == "cpu" and torch_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(DeviceError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
