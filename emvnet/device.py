"""Compute devices: the one reading of a device name for inference, the engine and training.

A name is `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available, else the CPU). Only names that
need CUDA import torch, so `cpu` costs nothing to check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emvnet.errors import DeviceError

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = "cpu, cuda, cuda:N or auto"


def is_device_name(device: str) -> bool:
    """Whether `device` is spelled as a device name; says nothing of what this machine has."""
    head, colon, index = device.partition(":")
    return device in ("cpu", "cuda", "auto") or (head == "cuda" and bool(colon) and index.isdigit())


def resolve_device(device: str) -> str:
    """The device `device` names on this machine (`auto`: `cuda` when available, else `cpu`);
    DeviceError for an unknown name or a CUDA device that is not here."""
    if not is_device_name(device):
        raise DeviceError(f"unknown device {device!r}; use {DEVICE_NAMES}")
    if device == "cpu":
        return device
    import torch  # only GPU requests pay for importing torch here

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was requested but CUDA is not available here; use --device cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {device!r} does not exist; {torch.cuda.device_count()} CUDA device(s) here"
        )
    return device


def torch_device(device: str) -> torch.device:
    """`resolve_device` as a torch.device."""
    import torch

    return torch.device(resolve_device(device))
