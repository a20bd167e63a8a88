"""One tester for every svseg network (segmentation_models_pytorch style).

A network's test module subclasses :class:`NetworkTester` and only declares data:

``network_class``
    the public class under test.
``cases``
    a list of :class:`NetCase`: constructor keywords, an input shape, the eval-mode output
    shape and the train-mode output structure (one shape, or a list of shapes for
    deep-supervision / auxiliary outputs; ``None`` inside the list skips the shape check of
    that element, e.g. flattened guide vectors).
``param_pins``
    a list of :class:`ParamPin`: constructor keywords and the exact parameter count the
    authors' implementation has at that configuration (``../shared/reference/figures.md``).
    Pins build the network but never run it, so large configurations are cheap.
``invalid_kwargs``
    a list of :class:`BadArgs`: keywords that must raise ``ValueError``; :func:`rejected_kwargs`
    writes the common one-keyword rows.
``export_method``
    ``"export"`` (torch.export, saved and loaded again), ``"script"`` (TorchScript, saved and
    loaded again) or ``"trace"``; the round-tripped module must reproduce eval-mode outputs.
``export_case``
    index into ``cases`` used for the export round trip (keep it small).
``check_no_unused_parameters``
    after a train-mode backward every parameter must have received a gradient (no dead
    weights, as the "used parameters" figures demand). Set ``False`` only with a reason.

Each base test runs once per case (see ``tests/conftest.py``).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import pytest
import torch

from svseg.networks.blocks import flatten_outputs


@dataclass
class NetCase:
    name: str
    kwargs: dict
    input_shape: tuple
    eval_shape: tuple
    # a tuple shape (single tensor) or a list of shapes/None (list/tuple output in train mode)
    train_shapes: Any = None
    # extra forward args (e.g. none for most networks)
    atol: float = 1e-5


@dataclass
class ParamPin:
    name: str
    kwargs: dict
    expected: int
    # optional: counts of selected sub-modules {"attr.path": n}
    submodules: dict = field(default_factory=dict)


@dataclass
class BadArgs:
    name: str
    kwargs: dict
    match: str | None = None


def rejected_kwargs(**values: Sequence[Any]) -> list[BadArgs]:
    """One :class:`BadArgs` per keyword and value: ``keyword=value`` alone must raise a ``ValueError``
    whose message names ``keyword``. ``rejected_kwargs(in_channels=[0], features=[0, 8.5])`` gives the
    cases ``in_channels=0``, ``features=0`` and ``features=8.5``."""
    return [BadArgs(f"{key}={value!r}", {key: value}, key) for key, vals in values.items() for value in vals]


def eval_and_train_outputs(net: torch.nn.Module, x: torch.Tensor) -> tuple[Any, Any]:
    """``net(x)`` in eval mode, then in train mode with every batch norm kept in eval mode (so both
    forwards use the same statistics), without gradients. ``net`` is left in eval mode."""
    with torch.no_grad():
        net.eval()
        ev = net(x)
        net.train()
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.eval()
        tr = net(x)
    net.eval()
    return ev, tr


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class NetworkTester:
    network_class: Any = None
    cases: Sequence[NetCase] = ()
    param_pins: Sequence[ParamPin] = ()
    invalid_kwargs: Sequence[BadArgs] = ()
    export_method: str = "export"
    export_case: int = 0
    check_no_unused_parameters: bool = True

    _cache: dict = {}

    # ----------------------------------------------------------------- helpers
    def build(self, kwargs: dict) -> torch.nn.Module:
        key = (self.network_class, repr(sorted(kwargs.items())))
        cache = type(self).__dict__.get("_model_cache")
        if cache is None:
            cache = {}
            setattr(type(self), "_model_cache", cache)
        if key not in cache:
            torch.manual_seed(0)
            cache.clear()  # keep at most one model per class alive (memory)
            cache[key] = self.network_class(**kwargs)
        return cache[key]

    @staticmethod
    def make_input(shape) -> torch.Tensor:
        g = torch.Generator().manual_seed(1234)
        return torch.randn(*shape, generator=g)

    # ------------------------------------------------------------------- tests
    def test_eval_output(self, case: NetCase):
        net = self.build(case.kwargs).eval()
        with torch.no_grad():
            out = net(self.make_input(case.input_shape))
        assert isinstance(out, torch.Tensor), f"eval mode must return one tensor, got {type(out)}"
        assert tuple(out.shape) == tuple(case.eval_shape)
        assert torch.isfinite(out).all()

    def test_train_output_and_backward(self, case: NetCase):
        net = self.build(case.kwargs).train()
        net.zero_grad(set_to_none=True)
        x = self.make_input(case.input_shape).requires_grad_(False)
        out = net(x)
        expected = case.train_shapes if case.train_shapes is not None else case.eval_shape
        if isinstance(expected, list):
            assert isinstance(out, (list, tuple)), f"train mode must return a list/tuple, got {type(out)}"
            assert len(out) == len(expected), f"expected {len(expected)} train outputs, got {len(out)}"
            for i, (o, s) in enumerate(zip(out, expected)):
                if s is not None:
                    assert tuple(o.shape) == tuple(s), f"train output {i}: {tuple(o.shape)} != {tuple(s)}"
        else:
            assert isinstance(out, torch.Tensor), f"train mode must return one tensor, got {type(out)}"
            assert tuple(out.shape) == tuple(expected)
        tensors = flatten_outputs(out)
        loss = sum((t.float() ** 2).mean() for t in tensors)
        assert torch.isfinite(loss)
        loss.backward()
        grads = [(n, p.grad) for n, p in net.named_parameters() if p.requires_grad]
        for n, g in grads:
            if g is not None:
                assert torch.isfinite(g).all(), f"non-finite gradient in {n}"
        if self.check_no_unused_parameters:
            missing = [n for n, g in grads if g is None]
            assert not missing, f"parameters never used in a train-mode forward: {missing[:10]} (+{max(0, len(missing) - 10)})"
        net.zero_grad(set_to_none=True)

    def test_eval_deterministic(self, case: NetCase):
        net = self.build(case.kwargs).eval()
        x = self.make_input(case.input_shape)
        with torch.no_grad():
            a = net(x)
            b = net(x)
        assert torch.equal(a, b), "eval mode must be deterministic"

    def test_param_count(self, pin: ParamPin):
        net = self.network_class(**pin.kwargs)
        assert count_parameters(net) == pin.expected, f"{pin.name}: {count_parameters(net):,} != {pin.expected:,}"
        for path, n in pin.submodules.items():
            sub = net.get_submodule(path)
            assert count_parameters(sub) == n, f"{pin.name}.{path}: {count_parameters(sub):,} != {n:,}"
        del net

    def test_invalid_arguments(self, bad_kwargs: BadArgs):
        with pytest.raises(ValueError, match=bad_kwargs.match):
            self.network_class(**bad_kwargs.kwargs)

    def test_export_round_trip(self):
        if not self.cases:
            pytest.skip("no cases")
        case = self.cases[self.export_case]
        net = self.build(case.kwargs).eval()
        x = self.make_input(case.input_shape)
        with torch.no_grad():
            ref = net(x)
        buf = io.BytesIO()
        if self.export_method == "export":
            ep = torch.export.export(net, (x,))
            torch.export.save(ep, buf)
            buf.seek(0)
            loaded = torch.export.load(buf).module()
        elif self.export_method == "script":
            torch.jit.save(torch.jit.script(net), buf)
            buf.seek(0)
            loaded = torch.jit.load(buf)
        elif self.export_method == "trace":
            with torch.no_grad():
                torch.jit.save(torch.jit.trace(net, x), buf)
            buf.seek(0)
            loaded = torch.jit.load(buf)
        else:  # pragma: no cover
            raise AssertionError(f"unknown export_method {self.export_method}")
        with torch.no_grad():
            got = loaded(x)
        torch.testing.assert_close(got, ref, atol=case.atol, rtol=1e-4)
