"""Slice-batched inference of 2D networks on 3D volumes, and 3D sliding-window inference.

:class:`VolumeSliceInferer` is a MONAI :class:`~monai.inferers.Inferer`: ``inferer(volume, network)``
takes a ``(B, C, H, W, D)`` volume and returns ``(B, K, H, W, D)`` scores, so it can be the
``inferer`` of a MONAI ``SupervisedEvaluator``, of a bundle's ``inference.json`` or of a MONAI
Label task. It cuts the volume into slices along ``axis``, runs them through the 2D network
``batch_size`` slices at a time and stacks the results back. Three modes:

``"resize"``
    each slice is resized to ``roi_size`` with ``torch.nn.functional.interpolate`` (``interp_mode``),
    the network's logits are resized back to the slice size (``output_interp_mode``, bilinear by
    default) - the fast path for networks trained at a fixed input size.
``"sliding_window"``
    MONAI's sliding window inside each slice (Gaussian blending, ``overlap``); slices smaller than
    ``roi_size`` are padded - for networks trained on patches of the native resolution.
``"transunet"``
    the TransUNet / MSA2Net ``test_single_volume`` procedure: each slice is zoomed to ``roi_size``
    with a cubic spline (``scipy.ndimage.zoom(order=3)``), optionally normalised
    (``normalize=(0.5, 0.5)`` for MSA2Net, ``None`` for TransUNet), softmax + argmax at ``roi_size``,
    then the label map is zoomed back with ``order=0``. The result is returned as a **one-hot
    float tensor** ``(B, K, H, W, D)`` whose argmax is exactly the protocol's label map (K = the
    network's output channels). ``zoom_backend="torch"`` replaces the per-slice scipy zooms by
    batched ``interpolate`` (bicubic, corners aligned as scipy's zoom) and an exact index-based
    nearest upsampling: faster, not bit-identical (see ``benchmarks/inference.py`` for agreement).

Optional flip test-time augmentation (``tta=True``) averages the logits of the identity and of
flips along the in-plane axes (nnU-Net style). 2D input ``(B, C, H, W)`` is treated as a batch of
single slices.

:class:`VolumeInferer` runs a 3D network with MONAI's 3D sliding window (Gaussian blending), with
the same optional flip TTA.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import Inferer, SlidingWindowInferer, sliding_window_inference

__all__ = ["VolumeSliceInferer", "VolumeInferer", "argmax_channels", "network_output", "scipy_nearest_indices"]

_MODES = ("resize", "sliding_window", "transunet")


def network_output(out: Any) -> torch.Tensor:
    """The logits tensor of a network call: the tensor itself, or the first element of a tuple/list
    (train-mode deep-supervision outputs), or ``out["pred"]`` for a dict."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and isinstance(out.get("pred"), torch.Tensor):
        return out["pred"]
    raise ValueError(f"the network returned {type(out).__name__}; expected a logits tensor (eval mode).")


def scipy_nearest_indices(n_in: int, n_out: int) -> torch.Tensor:
    """Source indices of ``scipy.ndimage.zoom(order=0)`` along one axis (``grid_mode=False``):
    output ``o`` reads input ``round_half_up(o * (n_in - 1) / (n_out - 1))``."""
    if n_out == 1:
        return torch.zeros(1, dtype=torch.long)
    o = np.arange(n_out, dtype=np.float64)
    coord = o * (float(n_in - 1) / float(n_out - 1)) if n_in > 1 else np.zeros_like(o)
    idx = np.floor(coord + 0.5).astype(np.int64)
    return torch.from_numpy(np.clip(idx, 0, n_in - 1))


def _dtype(value: torch.dtype | str | None, name: str) -> torch.dtype | None:
    """A torch dtype from a dtype or its name (``"bfloat16"``, ``"torch.float16"``), for JSON configs."""
    if value is None or isinstance(value, torch.dtype):
        return value
    dt = getattr(torch, str(value).replace("torch.", ""), None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"{name} must be a torch dtype or its name, got {value!r}.")
    return dt


def argmax_channels(scores: torch.Tensor) -> torch.Tensor:
    """``torch.argmax(scores, dim=1)`` (first maximum wins), faster on CPU for few channels.

    PyTorch's CPU argmax over a short, strided channel axis is slow; for up to 32 channels a running
    comparison over the channel planes gives the same indices (NaN-free input).
    """
    k = scores.shape[1]
    if k > 32 or scores.device.type != "cpu":
        return torch.argmax(scores, dim=1)
    best = scores[:, 0].clone()
    labels = torch.zeros(best.shape, dtype=torch.long, device=scores.device)
    for c in range(1, k):
        plane = scores[:, c]
        better = plane > best
        labels.masked_fill_(better, c)
        best = torch.maximum(best, plane)
    return labels


def _flip_dims(spatial_dims: int, axes: Sequence[int] | None) -> list[tuple[int, ...]]:
    """All non-empty combinations of the flip axes, as tensor dims (batch and channel first)."""
    axes = tuple(range(spatial_dims)) if axes is None else tuple(axes)
    for a in axes:
        if not 0 <= a < spatial_dims:
            raise ValueError(f"tta_axes must be in [0, {spatial_dims}), got {a}.")
    combos: list[tuple[int, ...]] = []
    for r in range(1, len(axes) + 1):
        for c in itertools.combinations(axes, r):
            combos.append(tuple(2 + a for a in c))
    return combos


class VolumeSliceInferer(Inferer):
    """Run a 2D network over a 3D volume slice by slice, with batching, resizing or sliding window.

    Args:
        roi_size: the network's input size ``(h, w)`` (an int means square).
        axis: spatial axis of the volume to slice along (0, 1 or 2 of ``(H, W, D)``; 2 = axial for
            RAS-like volumes).
        batch_size: slices per network call (also the sliding-window batch size).
        mode: ``"resize"``, ``"sliding_window"`` or ``"transunet"`` (module docstring).
        overlap: sliding-window overlap (``"sliding_window"`` mode).
        blend_mode: ``"gaussian"`` or ``"constant"`` window blending.
        sigma_scale: Gaussian sigma relative to the window size.
        interp_mode: interpolation of the slices to ``roi_size`` (``"resize"`` mode; ``"bilinear"``,
            ``"bicubic"``, ``"nearest"``, ``"area"``).
        output_interp_mode: interpolation of the logits back to the slice size (``"resize"`` mode).
        align_corners: ``align_corners`` of both interpolations (``"resize"`` mode).
        tta: average the logits over flips of the in-plane axes (not in ``"transunet"`` mode).
        tta_axes: in-plane axes to flip (0, 1); default both (3 flipped copies + identity).
        normalize: ``(mean, std)`` applied after resizing, before the network: ``"transunet"`` mode
            (MSA2Net uses ``(0.5, 0.5)``; TransUNet ``None``). Other modes expect normalised input.
        zoom_backend: ``"scipy"`` (exact reference procedure) or ``"torch"`` (batched), ``"transunet"``
            mode.
        channels_last: feed the network channels-last batches (convert the network too with
            ``network.to(memory_format=torch.channels_last)`` for the benefit).
        output_dtype: dtype of the returned scores (``torch.float16`` halves the memory of large
            volumes).
        device: device of the returned tensor (default: the input's device). Slices are computed on the
            network's device.
        use_inference_mode: run under ``torch.inference_mode()`` (the outputs cannot enter autograd).
        amp_dtype: run the network under ``torch.autocast`` with this dtype (``torch.bfloat16`` on CPUs with
            bf16 instructions, ``torch.float16``/``torch.bfloat16`` on GPUs); ``None`` = full precision.
            Scores are returned in ``output_dtype``.
        progress: show a progress bar over slice batches.
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int = (224, 224),
        axis: int = 2,
        batch_size: int = 16,
        mode: str = "resize",
        overlap: float = 0.25,
        blend_mode: str = "gaussian",
        sigma_scale: float = 0.125,
        interp_mode: str = "bilinear",
        output_interp_mode: str = "bilinear",
        align_corners: bool | None = False,
        tta: bool = False,
        tta_axes: Sequence[int] | None = None,
        normalize: tuple[float, float] | None = None,
        zoom_backend: str = "scipy",
        channels_last: bool = False,
        output_dtype: torch.dtype | str = torch.float32,
        device: torch.device | str | None = None,
        use_inference_mode: bool = True,
        amp_dtype: torch.dtype | str | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__()
        roi = (int(roi_size), int(roi_size)) if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
        if len(roi) != 2 or min(roi) < 1:
            raise ValueError(f"roi_size must be two positive ints (h, w), got {roi_size!r}.")
        if axis not in (0, 1, 2, -1, -2, -3):
            raise ValueError(f"axis must be 0, 1 or 2 (a spatial axis of (H, W, D)), got {axis}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
        if blend_mode not in ("gaussian", "constant"):
            raise ValueError(f"blend_mode must be 'gaussian' or 'constant', got {blend_mode!r}.")
        if zoom_backend not in ("scipy", "torch"):
            raise ValueError(f"zoom_backend must be 'scipy' or 'torch', got {zoom_backend!r}.")
        if tta and mode == "transunet":
            raise ValueError("tta is not part of the transunet protocol; use mode='resize' or 'sliding_window'.")
        if normalize is not None and (len(normalize) != 2 or float(normalize[1]) == 0):
            raise ValueError(f"normalize must be (mean, std) with std != 0, got {normalize!r}.")
        self.roi_size = roi
        self.axis = axis % 3
        self.batch_size = int(batch_size)
        self.mode = mode
        self.overlap = float(overlap)
        self.blend_mode = blend_mode
        self.sigma_scale = float(sigma_scale)
        self.interp_mode = interp_mode
        self.output_interp_mode = output_interp_mode
        self.align_corners = align_corners
        self.tta = bool(tta)
        self.flips = _flip_dims(2, tta_axes) if tta else []
        self.normalize = None if normalize is None else (float(normalize[0]), float(normalize[1]))
        self.zoom_backend = zoom_backend
        self.channels_last = bool(channels_last)
        self.output_dtype = _dtype(output_dtype, "output_dtype")
        self.device = device
        self.use_inference_mode = bool(use_inference_mode)
        self.amp_dtype = _dtype(amp_dtype, "amp_dtype")
        self.progress = bool(progress)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _net_device(network: Callable, fallback: torch.device) -> torch.device:
        if isinstance(network, torch.nn.Module):
            for p in itertools.chain(network.parameters(), network.buffers()):
                return p.device
        return fallback

    def _interp(self, x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        kwargs = {} if mode in ("nearest", "area", "nearest-exact") else {"align_corners": self.align_corners}
        return F.interpolate(x, size=tuple(size), mode=mode, **kwargs)

    def _forward(self, network: Callable, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp_dtype is None:
            return network_output(network(x, *args, **kwargs))
        with torch.autocast(device_type=x.device.type, dtype=self.amp_dtype):
            return network_output(network(x, *args, **kwargs)).float()

    def _predict_2d(self, network: Callable, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Logits of a batch of slices ``(n, C, h, w)`` at the slice size (``resize``/``sliding_window``)."""
        h, w = x.shape[-2:]
        if self.mode == "resize":
            y = self._forward(network, self._interp(x, self.roi_size, self.interp_mode), *args, **kwargs)
            return self._interp(y.float(), (h, w), self.output_interp_mode)
        if (h, w) == self.roi_size:
            return self._forward(network, x, *args, **kwargs).float()
        return sliding_window_inference(
            x, self.roi_size, self.batch_size, lambda t: self._forward(network, t, *args, **kwargs),
            overlap=self.overlap, mode=self.blend_mode, sigma_scale=self.sigma_scale,
        ).float()

    def _predict_2d_tta(self, network: Callable, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self._predict_2d(network, x, *args, **kwargs)
        for dims in self.flips:
            y = y + torch.flip(self._predict_2d(network, torch.flip(x, dims), *args, **kwargs), dims)
        return y / (1 + len(self.flips))

    def _transunet_labels(self, network: Callable, x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, int]:
        """Label maps ``(n, h, w)`` of a batch of slices by the TransUNet procedure, and the number of
        network output channels."""
        h, w = x.shape[-2:]
        p0, p1 = self.roi_size
        resize = (h, w) != (p0, p1)
        if self.zoom_backend == "scipy":
            from scipy.ndimage import zoom

            xs = x.detach().cpu().numpy()
            if resize:
                xs = np.stack(
                    [np.stack([zoom(ch, (p0 / h, p1 / w), order=3) for ch in sl]) for sl in xs]
                )
            inp = torch.from_numpy(np.ascontiguousarray(xs)).float()
        else:
            inp = x.float()
            if resize:
                inp = F.interpolate(inp, size=(p0, p1), mode="bicubic", align_corners=True)
        if self.normalize is not None:
            inp = (inp - self.normalize[0]) / self.normalize[1]
        dev = self._net_device(network, x.device)
        logits = self._forward(network, inp.to(dev), *args, **kwargs)
        k = int(logits.shape[1])
        labels = argmax_channels(torch.softmax(logits.float(), dim=1))
        if k <= 256:
            labels = labels.to(torch.uint8)  # 8x less memory traffic for the upsampling gather
        if not resize:
            return labels, k
        if self.zoom_backend == "scipy":
            from scipy.ndimage import zoom

            lab = labels.cpu().numpy()
            back = np.stack([zoom(sl, (h / p0, w / p1), order=0) for sl in lab])
            return torch.from_numpy(back).to(labels.device), k
        ih = scipy_nearest_indices(p0, h).to(labels.device)
        iw = scipy_nearest_indices(p1, w).to(labels.device)
        return labels[:, ih][:, :, iw], k

    # ------------------------------------------------------------------ call
    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """Scores ``(B, K, H, W, D)`` (logits, or one-hot in ``"transunet"`` mode) of ``inputs (B, C, H, W, D)``.

        ``inputs`` may also be ``(B, C, H, W)``: each item is one slice. Extra ``args``/``kwargs`` go to
        the network.
        """
        return self._checked_run(inputs, network, False, *args, **kwargs)

    def predict_labels(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """Label maps ``(B, H, W, D)``: the argmax of :meth:`__call__`, computed slice batch by slice batch so
        the ``(B, K, H, W, D)`` scores are never held in memory. dtype ``torch.uint8`` for up to 256
        classes (a Synapse volume then takes 50 MB instead of 400 MB), ``torch.long`` otherwise."""
        return self._checked_run(inputs, network, True, *args, **kwargs)

    def _checked_run(self, inputs, network, labels_only: bool, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not isinstance(inputs, torch.Tensor):
            raise ValueError(f"inputs must be a torch.Tensor (B, C, H, W[, D]), got {type(inputs).__name__}.")
        if inputs.ndim not in (4, 5):
            raise ValueError(f"inputs must be (B, C, H, W, D) or (B, C, H, W), got shape {tuple(inputs.shape)}.")
        ctx = torch.inference_mode() if self.use_inference_mode else torch.no_grad()
        with ctx:
            return self._run(inputs, network, labels_only, *args, **kwargs)

    def _run(self, inputs: torch.Tensor, network: Callable, labels_only: bool, *args: Any, **kwargs: Any) -> torch.Tensor:
        out_device = torch.device(self.device) if self.device is not None else inputs.device
        if hasattr(inputs, "as_tensor"):
            inputs = inputs.as_tensor()  # MetaTensor -> plain tensor (meta is not needed per slice)
        volumetric = inputs.ndim == 5
        if volumetric:
            b, c = inputs.shape[:2]
            slices = inputs.movedim(2 + self.axis, 1)  # (B, S, C, a, b), a view
            n_slices = slices.shape[1]
            plane = tuple(slices.shape[3:])
            total = b * n_slices

            def get_chunk(s: int, e: int) -> torch.Tensor:
                # gather slices s..e-1 of the flattened (B*S) axis into a contiguous batch
                parts = []
                for bi in range(s // n_slices, (e - 1) // n_slices + 1):
                    lo, hi = max(s - bi * n_slices, 0), min(e - bi * n_slices, n_slices)
                    parts.append(slices[bi, lo:hi])
                return torch.cat(parts) if len(parts) > 1 else parts[0].contiguous()
        else:
            plane = tuple(inputs.shape[2:])
            total = inputs.shape[0]

            def get_chunk(s: int, e: int) -> torch.Tensor:
                return inputs[s:e].contiguous()

        dev = self._net_device(network, inputs.device)
        starts = range(0, total, self.batch_size)
        if self.progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="slices", unit="batch")
        out: torch.Tensor | None = None
        for s in starts:
            e = min(s + self.batch_size, total)
            chunk = get_chunk(s, e).to(device=dev, dtype=torch.float32)
            if self.mode == "transunet":
                labels, k = self._transunet_labels(network, chunk, *args, **kwargs)
            else:
                y = self._predict_2d_tta(network, chunk, *args, **kwargs) if self.tta else self._predict_2d(network, chunk, *args, **kwargs)
                k = int(y.shape[1])
                if labels_only:
                    labels = argmax_channels(y)
            if labels_only:
                if out is None:
                    out = torch.empty((total, *plane), dtype=torch.uint8 if k <= 256 else torch.long, device=out_device)
                out[s:e] = labels.to(out_device)
            elif self.mode == "transunet":
                if out is None:
                    out = torch.zeros((total, k, *plane), dtype=self.output_dtype, device=out_device)
                out[s:e].scatter_(1, labels.to(out_device).long().unsqueeze(1), 1)
            else:
                if out is None:
                    out = torch.empty((total, k, *plane), dtype=self.output_dtype, device=out_device)
                out[s:e] = y.to(device=out_device, dtype=self.output_dtype)
        assert out is not None
        if not volumetric:
            return out
        if labels_only:
            return out.reshape(b, n_slices, *plane).movedim(1, 1 + self.axis)
        k = out.shape[1]
        return out.reshape(b, n_slices, k, *plane).movedim(1, 2 + self.axis)


class VolumeInferer(Inferer):
    """3D sliding-window inference of a 3D network (MONAI ``SlidingWindowInferer``) with flip TTA.

    Args:
        roi_size: the 3D window size.
        sw_batch_size: windows per network call.
        overlap: window overlap.
        blend_mode: ``"gaussian"`` (default) or ``"constant"``.
        tta: average the logits of the identity and of the flips along ``tta_axes``.
        tta_axes: spatial axes to flip (default all three: 7 flipped copies).
        use_inference_mode: run under ``torch.inference_mode()``.
        sw_kwargs: more keywords for ``monai.inferers.SlidingWindowInferer`` (``sw_device``,
            ``device``, ``sigma_scale``, ``padding_mode``, ``progress`` ...).
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 1,
        overlap: float = 0.5,
        blend_mode: str = "gaussian",
        tta: bool = False,
        tta_axes: Sequence[int] | None = None,
        use_inference_mode: bool = True,
        **sw_kwargs: Any,
    ) -> None:
        super().__init__()
        self.sw = SlidingWindowInferer(roi_size, sw_batch_size=sw_batch_size, overlap=overlap, mode=blend_mode, **sw_kwargs)
        self.tta = bool(tta)
        self.flips = _flip_dims(3, tta_axes) if tta else []
        self.use_inference_mode = bool(use_inference_mode)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """Logits ``(B, K, H, W, D)`` of ``inputs (B, C, H, W, D)``."""
        if not isinstance(inputs, torch.Tensor) or inputs.ndim != 5:
            raise ValueError(f"inputs must be a (B, C, H, W, D) tensor, got {getattr(inputs, 'shape', type(inputs))}.")

        def predictor(t, *a, **k):
            return network_output(network(t, *a, **k))

        ctx = torch.inference_mode() if self.use_inference_mode else torch.no_grad()
        with ctx:
            y = self.sw(inputs, predictor, *args, **kwargs)
            for dims in self.flips:
                y = y + torch.flip(self.sw(torch.flip(inputs, dims), predictor, *args, **kwargs), dims)
            return y / (1 + len(self.flips))
