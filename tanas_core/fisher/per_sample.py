"""Each sample's gradient of one layer's parameters, rebuilt from the layer's input and its output gradient (the
BackPACK idea, for ``Conv2d``, ``Linear`` and eval-mode ``BatchNorm2d``). ``fisher`` hooks these into one forward and
one backward pass per chunk of samples."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tanas_core.errors import TanasError

SUPPORTED_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


def layer_slots(model: nn.Module, selected) -> list[tuple[nn.Module, dict[str, tuple[int, int]]]]:
    """For each layer owning selected parameters: ``{"weight"/"bias": (offset, numel)}`` into the flat vector."""
    offsets, position = {}, 0
    for name, p in selected:
        offsets[name] = (position, p.numel())
        position += p.numel()
    slots, covered = [], set()
    for module_name, module in model.named_modules():
        own = {local: f"{module_name}.{local}" if module_name else local
               for local, _ in module.named_parameters(recurse=False)}
        chosen = {local: offsets[full] for local, full in own.items() if full in offsets}
        if not chosen:
            continue
        if not isinstance(module, SUPPORTED_LAYERS) or (isinstance(module, nn.BatchNorm2d)
                                                  and not module.track_running_stats):
            raise TanasError(f"per-sample gradients are not implemented for layer {module_name!r} "
                             f"({type(module).__name__}); supported: Conv2d, Linear, BatchNorm2d with running stats")
        slots.append((module, chosen))
        covered.update(own[local] for local in chosen)
    missing = set(offsets) - covered
    if missing:
        raise TanasError(f"parameters {sorted(missing)[:3]} belong to no supported layer")
    return slots


def layer_gradients(module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each sample's gradient of the module's parameters: ``{"weight": [B, *w.shape], "bias": [B, *b.shape]}``."""
    batch = x.shape[0]
    if isinstance(module, nn.Linear):
        out = {"weight": grad_out.unsqueeze(2) * x.unsqueeze(1)}
        if module.bias is not None:
            out["bias"] = grad_out
        return out
    if isinstance(module, nn.Conv2d):
        padding = module.padding
        if module.padding_mode != "zeros" or isinstance(padding, str):
            raise TanasError("per-sample gradients support Conv2d with zero padding given as numbers only")
        positions = grad_out.shape[2] * grad_out.shape[3]
        if _is_pointwise(module):
            weight = torch.bmm(_channel_rows(grad_out), _channel_rows(x).transpose(1, 2)).reshape(
                batch, *module.weight.shape)
        elif module.groups > 1 or positions >= 64:
            weight = conv_weight_gradients(module, x, grad_out)
        else:
            columns = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding,
                               stride=module.stride)
            weight = torch.bmm(grad_out.reshape(batch, module.out_channels, positions),
                               columns.transpose(1, 2)).reshape(batch, *module.weight.shape)
        out = {"weight": weight}
        if module.bias is not None:
            out["bias"] = grad_out.sum(dim=(2, 3))
        return out
    # BatchNorm2d in eval mode: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
    normalised = (x - module.running_mean.view(1, -1, 1, 1)) * torch.rsqrt(module.running_var.view(1, -1, 1, 1)
                                                                           + module.eps)
    out = {}
    if module.weight is not None:
        out["weight"] = (grad_out * normalised).sum(dim=(2, 3))
    if module.bias is not None:
        out["bias"] = grad_out.sum(dim=(2, 3))
    return out


def _is_pointwise(module: nn.Conv2d) -> bool:
    """A 1x1 convolution without stride, padding or groups: each sample's weight gradient is one matrix product."""
    return (module.kernel_size == (1, 1) and module.stride == (1, 1) and module.dilation == (1, 1)
            and tuple(module.padding) == (0, 0) and module.groups == 1)


def _channel_rows(t: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` as ``[B, C, H * W]`` without a copy, in the default or the channels-last layout."""
    if t.is_contiguous():
        return t.flatten(2)
    return t.permute(0, 2, 3, 1).flatten(1, 2).transpose(1, 2)


def conv_weight_gradients(module: nn.Conv2d, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients ``[B, C_out, C_in / groups, kh, kw]`` as the weight gradient of one grouped
    convolution in which every sample is its own group of channels.

    On feature maps of 8 x 8 or more, and for grouped / depthwise convolutions, this runs the library's weight-gradient
    kernel and was measured 1.5-6x faster than unfold + batched matmul on a CPU (which copies the input kernel-size
    times); on 4 x 4 and smaller maps, unfold wins and is used instead.
    """
    batch, c_in = x.shape[:2]
    c_out = grad_out.shape[1]
    weight = torch.nn.grad.conv2d_weight(
        x.reshape(1, batch * c_in, *x.shape[2:]), (batch * c_out, *module.weight.shape[1:]),
        grad_out.reshape(1, batch * c_out, *grad_out.shape[2:]), stride=module.stride, padding=module.padding,
        dilation=module.dilation, groups=batch * module.groups)
    return weight.reshape(batch, *module.weight.shape)
