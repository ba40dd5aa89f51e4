"""Where a network runs: ``"auto"`` picks CUDA, then Apple's MPS, then the CPU, so one code path serves all three."""
from __future__ import annotations

import torch

from tanas_core.errors import TanasError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else mps, else cpu; other strings are checked and passed through."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise TanasError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise TanasError("device 'cuda' was requested but CUDA is not available here; use device='auto' or 'cpu'")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise TanasError("device 'mps' was requested but MPS is not available here; use device='auto' or 'cpu'")
    return resolved
