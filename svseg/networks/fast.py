"""The opt-in fast mode: bf16 autocast, channels_last and ``torch.compile`` around a network's forward.

``fast_mode(net)`` changes how ``net`` computes, not what it holds: its parameters, buffers and
``state_dict`` keys stay as they are (fp32, the same names), so checkpoints move freely between the fp32
path and the fast path, and the authors' weights load the same way. Each forward

* runs under ``torch.autocast(<the input's device type>, dtype=torch.bfloat16)``: convolutions and matrix
  products in bf16, the ops autocast keeps in fp32 (softmax, norms' statistics, reductions) in fp32;
* returns its outputs cast back to fp32 (a tensor, or the same tuple/list/dict structure), so losses,
  metrics and inferers downstream see the dtype they see on the fp32 path;
* with ``channels_last=True``, moves the module and its 4-D inputs to the channels-last memory format (the
  layout oneDNN and cuDNN prefer for bf16 convolutions; off by default, not yet measured per network in bf16);
* with ``compile=True``, runs the forward through ``torch.compile`` (inductor), at fp32 too (``enabled=False``:
  no autocast, so no bf16 needed). MetaTensor inputs enter it as plain tensors and its tensor outputs leave as
  MetaTensors with the (first) input's meta, as MONAI's ``SupervisedEvaluator(compile=True)`` does. The first
  forward per input shape compiles (20-110 s per network on 2 CPU cores). Measured on a 2-core AVX2 CPU against
  the authors' eager code (``benchmarks/versus_authors.py --compile``, ``docs/benchmarks.md``): eval forward
  1.62x for SA2-Net, 1.25x AFMA, 1.12x MSGA, 1.08x MSA2Net, 1.01x SvANet, and a training step slower (SA2-Net:
  6.7 s vs 5.5 s eager), so it is an inference option on a CPU; on a GPU it is untested here;
* with ``compile="freeze"``, also folds the weights into the compiled graph (inductor's ``freezing``: constants,
  pre-packed for oneDNN), for inference only: it refuses a forward with gradients, and a forward after the weights
  changed in place since the graph was frozen, rather than compute with stale weights. Eval against the authors'
  eager code on the AVX2 CPU: SA2-Net 1.56x, AFMA 1.26x, SvANet 1.15x, MSGA 1.15x, MSA2Net 1.08x
  (``versus_authors.py --compile freeze --skip-train``, ``docs/benchmarks.md``).

Why not the libraries' own switches: MONAI's ``SupervisedTrainer(amp=True)`` and ``SupervisedEvaluator``
enter ``torch.autocast("cuda")`` only, which does nothing on a CPU, and ignite's trainers do the same; the
fast mode has to work on the 2-core CPUs the demo runs on. Their ``compile=True`` covers the engines only
(not ``svseg predict``'s inferer loop, test-time augmentation or the benchmarks), and ``torch.compile(module)``
returns a wrapper whose ``state_dict`` keys gain an ``_orig_mod.`` prefix; compiling the instance's forward
keeps the module, its keys and its checkpoints as they are. Wrapping the network (rather than the engine)
covers the inferers, the exporters' eager reference and the benchmarks with one switch.

The fp32 path stays the default and keeps its fidelity to the authors' code (``tests/fidelity``). The bf16
part's speed and its effect on accuracy are not measured yet: the only CPUs it was tried on lack native bf16,
and there it refuses to run (``docs/benchmarks.md`` says what is known and what is left).
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Callable

import torch
from monai.data import MetaTensor
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


def _map_tensors(out: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``fn`` applied to every tensor of a network's output (a tensor, or a tuple/list/dict of them, named tuples
    keeping their type); other values pass unchanged."""
    if isinstance(out, torch.Tensor):
        return fn(out)
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a named tuple keeps its type
        return type(out)(*(_map_tensors(o, fn) for o in out))
    if isinstance(out, (tuple, list)):
        return type(out)(_map_tensors(o, fn) for o in out)
    if isinstance(out, dict):
        return {k: _map_tensors(v, fn) for k, v in out.items()}
    return out


def _to_float32(out: Any) -> Any:
    return _map_tensors(out, lambda t: t.float() if t.is_floating_point() and t.dtype != torch.float32 else t)


def _require_compiler(device_type: str) -> None:
    """torch.compile's CPU backend (inductor) builds C++; say so at once rather than deep in the first forward."""
    if device_type == "cpu":
        compiler = os.environ.get("CXX", "g++")
        if shutil.which(compiler) is None:
            raise RuntimeError(f"compile: torch.compile on a CPU needs a C++ compiler and {compiler!r} was not found "
                               "(apt-get install g++, or set CXX); run without --compile (compile=false)")


def _require_bf16(device_type: str) -> None:
    if not bf16_supported(device_type):
        what = f"this CPU (instruction set {_cpu_capability()})" if device_type == "cpu" else f"this {device_type} device"
        raise RuntimeError(f"fast mode: {what} has no native bf16 arithmetic, so bf16 autocast would run far slower "
                           "than fp32 (reference kernels instead of oneDNN/cuDNN ones); run without --fast "
                           "(fast_mode=false)")


def _plain(value: Any) -> Any:
    return value.as_tensor() if isinstance(value, MetaTensor) else value


def _with_meta(out: Any, like: Any) -> Any:
    """``out``'s tensors as MetaTensors carrying ``like``'s meta (what MONAI's evaluator does after a compiled
    forward), so transforms that invert or save the prediction see the same thing as on the eager path."""
    return _map_tensors(out, lambda t: MetaTensor(t, meta=like.meta, applied_operations=like.applied_operations))


COMPILE_MODES = (False, True, "freeze")


def _weights_version(module: nn.Module) -> tuple[int, ...]:
    """In-place changes to the weights (an optimiser step, ``load_state_dict``, BatchNorm statistics) bump a
    tensor's ``_version``; a frozen graph is only valid for the versions it was compiled at."""
    return tuple(t._version for t in (*module.parameters(), *module.buffers()))


class _FastForward:
    """The forward that ``fast_mode`` installs on one module instance (kept picklable and deep-copyable: the
    compiled function is rebuilt at the first call after a copy, never copied)."""

    def __init__(self, forward: Callable, dtype: torch.dtype | None, channels_last: bool,
                 compile: bool | str = False):
        self.forward = forward
        self.dtype = dtype
        self.channels_last = channels_last
        self.compile = compile
        self.compiled: Callable | None = None
        self.frozen_at: tuple[int, ...] | None = None
        self.checked: set[str] = set()  # device types whose bf16 support was confirmed

    def __getstate__(self) -> dict:
        return {**self.__dict__, "compiled": None, "frozen_at": None}

    def _compiled(self) -> Callable:
        if self.compile != "freeze":
            if self.compiled is None:
                self.compiled = torch.compile(self.forward)
            return self.compiled
        if torch.is_grad_enabled():
            raise RuntimeError("compile=freeze is for inference (torch.no_grad): a frozen graph folds the weights in as "
                               "constants, so it cannot train; use compile=true for training")
        version = _weights_version(self.forward.__self__)
        if self.compiled is None:
            # inductor's freezing: weights folded in and pre-packed at compile time (an inference-only graph)
            self.compiled = torch.compile(self.forward, options={"freezing": True})
            self.frozen_at = version
        elif version != self.frozen_at:
            raise RuntimeError("compile=freeze: the network's weights changed after its graph was frozen, which would "
                               "keep computing with the old ones; freeze is for inference with loaded weights "
                               "(svseg predict --compile freeze), compile=true for a network that trains")
        return self.compiled

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        if not self.compile:
            return self.forward(*args, **kwargs)
        like = next((a for a in (*args, *kwargs.values()) if isinstance(a, MetaTensor)), None)
        out = self._compiled()(*(_plain(a) for a in args), **{k: _plain(v) for k, v in kwargs.items()})
        return out if like is None else _with_meta(out, like)

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
        if self.dtype is None:
            return self._run(*args, **kwargs)
        with torch.autocast(device_type, dtype=self.dtype):
            out = self._run(*args, **kwargs)
        return _to_float32(out)


def fast_mode(net: nn.Module, enabled: bool = True, dtype: torch.dtype = torch.bfloat16,
              channels_last: bool = False, compile: bool | str = False) -> nn.Module:
    """Switch ``net`` (in place) to the fast mode and return it; ``enabled=False`` and ``compile=False`` return
    it unchanged.

    Args:
        net: any svseg network (or any ``nn.Module``).
        enabled: the bundles' ``fast_mode`` flag (autocast to ``dtype``); ``False`` keeps fp32, so that a config
            can always call this.
        dtype: the autocast dtype (bf16: no loss scaling is needed, unlike fp16).
        channels_last: also use the channels-last memory format for the module and its 4-D inputs.
        compile: the bundles' ``compile`` key: ``True`` runs the forward through ``torch.compile`` (with or
            without autocast); ``"freeze"`` also folds the weights into the graph (inductor's ``freezing``), for
            inference only: it refuses a forward with gradients, and a forward after the weights changed in place,
            rather than compute with stale weights. Either needs a C++ compiler (``g++``) on a CPU.

    Calling it twice is a no-op; the parameters stay fp32 and the ``state_dict`` is unchanged. The first
    forward on a device without native bf16 (an AVX2-only CPU, an older GPU) raises a ``RuntimeError`` that says
    so, rather than running many times slower than fp32 (no silent fallback to fp32 either: the user asked for
    bf16 and gets told why not).
    """
    if compile not in COMPILE_MODES:
        raise ValueError(f"compile must be one of false, true, 'freeze'; got {compile!r}")
    if not (enabled or compile) or is_fast_mode(net):
        return net
    first = next(iter(net.parameters()), None)
    device_type = first.device.type if first is not None else "cpu"
    if enabled and dtype == torch.bfloat16:
        _require_bf16(device_type)
    if compile:
        _require_compiler(device_type)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    net.forward = _FastForward(net.forward, dtype if enabled else None, channels_last, compile)
    return net


def is_fast_mode(net: nn.Module) -> bool:
    """Whether ``fast_mode`` was applied to ``net``."""
    return isinstance(net.__dict__.get("forward"), _FastForward)
