"""Helpers shared by the losses and metrics: shape checks, dtypes, autocast."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast_off", "check_signals", "output_dtype"]


def check_signals(estimates: torch.Tensor, targets: torch.Tensor) -> None:
    """Raise ``ValueError`` unless both are ``[batch, time, n]`` alike."""
    if estimates.ndim != 3 or targets.ndim != 3:
        raise ValueError(
            "expected estimates and targets of shape [batch, time, n_src], got "
            f"{tuple(estimates.shape)} and {tuple(targets.shape)}"
        )
    if estimates.shape[:2] != targets.shape[:2]:
        raise ValueError(
            "estimates and targets must agree in batch and time, got "
            f"{tuple(estimates.shape)} and {tuple(targets.shape)}"
        )


def output_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that disables autocast for ``device``'s type (a no-op where autocast is unknown)."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not support
        return contextlib.nullcontext()
