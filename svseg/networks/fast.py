"""The opt-in fast mode: bf16 autocast (and optionally channels_last) around a network's forward.

``fast_mode(net)`` changes how ``net`` computes, not what it holds: its parameters, buffers and
``state_dict`` keys stay as they are (fp32, the same names), so checkpoints move freely between the fp32
path and the fast path, and the authors' weights load the same way. Each forward

* runs under ``torch.autocast(<the input's device type>, dtype=torch.bfloat16)``: convolutions and matrix
  products in bf16, the ops autocast keeps in fp32 (softmax, norms' statistics, reductions) in fp32;
* returns its outputs cast back to fp32 (a tensor, or the same tuple/list/dict structure), so losses,
  metrics and inferers downstream see the dtype they see on the fp32 path;
* with ``channels_last=True``, moves the module and its 4-D inputs to the channels-last memory format (the
  layout oneDNN and cuDNN prefer for bf16 convolutions; off by default, not yet measured per network in bf16).

Why not the libraries' own switch: MONAI's ``SupervisedTrainer(amp=True)`` and ``SupervisedEvaluator``
enter ``torch.autocast("cuda")`` only, which does nothing on a CPU, and ignite's trainers do the same; the
fast mode has to work on the 2-core CPUs the demo runs on. Wrapping the network (rather than the engine)
also covers the inferers, the exporters' eager reference and the benchmarks with one switch.

The fp32 path stays the default and keeps its fidelity to the authors' code (``tests/fidelity``). The fast
mode's speed and its effect on accuracy are not measured yet: the only CPU they were tried on has no native bf16,
and there the mode refuses to run (``docs/benchmarks.md`` says what is known and what is left).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

__all__ = ["fast_mode", "is_fast_mode", "bf16_supported"]


def bf16_supported(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` computes bf16 natively: on a CPU, oneDNN's bf16 kernels (AVX-512 BF16 or AMX);
    on CUDA, ``torch.cuda.is_bf16_supported()``. Without them, bf16 convolutions and matrix products fall back
    to reference loops: measured on an AVX2-only EPYC, a 64-channel 3x3 convolution took 320x its fp32 time."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def _cpu_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def _to_float32(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a named tuple keeps its type
        return type(out)(*(_to_float32(o) for o in out))
    if isinstance(out, (tuple, list)):
        return type(out)(_to_float32(o) for o in out)
    if isinstance(out, dict):
        return {k: _to_float32(v) for k, v in out.items()}
    return out


def _require_bf16(device_type: str) -> None:
    if not bf16_supported(device_type):
        what = f"this CPU (instruction set {_cpu_capability()})" if device_type == "cpu" else f"this {device_type} device"
        raise RuntimeError(f"fast mode: {what} has no native bf16 arithmetic, so bf16 autocast would run far slower "
                           "than fp32 (reference kernels instead of oneDNN/cuDNN ones); run without --fast "
                           "(fast_mode=false)")


class _FastForward:
    """The forward that ``fast_mode`` installs on one module instance (kept picklable and deep-copyable)."""

    def __init__(self, forward: Callable, dtype: torch.dtype, channels_last: bool):
        self.forward = forward
        self.dtype = dtype
        self.channels_last = channels_last
        self.checked: set[str] = set()  # device types whose bf16 support was confirmed

    def _device_type(self, args: tuple, kwargs: dict) -> str:
        for a in (*args, *kwargs.values()):
            if isinstance(a, torch.Tensor):
                return a.device.type
        return "cpu"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        device_type = self._device_type(args, kwargs)
        if self.dtype == torch.bfloat16 and device_type not in self.checked:
            _require_bf16(device_type)
            self.checked.add(device_type)
        if self.channels_last:
            args = tuple(a.contiguous(memory_format=torch.channels_last)
                         if isinstance(a, torch.Tensor) and a.dim() == 4 else a for a in args)
        with torch.autocast(device_type, dtype=self.dtype):
            out = self.forward(*args, **kwargs)
        return _to_float32(out)


def fast_mode(net: nn.Module, enabled: bool = True, dtype: torch.dtype = torch.bfloat16,
              channels_last: bool = False) -> nn.Module:
    """Switch ``net`` (in place) to the fast mode and return it; ``enabled=False`` returns it unchanged.

    Args:
        net: any svseg network (or any ``nn.Module``).
        enabled: the bundles' ``fast_mode`` flag; ``False`` is a no-op so that a config can always call this.
        dtype: the autocast dtype (bf16: no loss scaling is needed, unlike fp16).
        channels_last: also use the channels-last memory format for the module and its 4-D inputs.

    Calling it twice is a no-op; the parameters stay fp32 and the ``state_dict`` is unchanged. The first
    forward on a device without native bf16 (an AVX2-only CPU, an older GPU) raises a ``RuntimeError`` that says
    so, rather than running many times slower than fp32 (no silent fallback to fp32 either: the user asked for
    bf16 and gets told why not).
    """
    if not enabled or is_fast_mode(net):
        return net
    if dtype == torch.bfloat16:
        first = next(iter(net.parameters()), None)
        _require_bf16(first.device.type if first is not None else "cpu")
    if channels_last:
        net.to(memory_format=torch.channels_last)
    net.forward = _FastForward(net.forward, dtype, channels_last)
    return net


def is_fast_mode(net: nn.Module) -> bool:
    """Whether ``fast_mode`` was applied to ``net``."""
    return isinstance(net.__dict__.get("forward"), _FastForward)
