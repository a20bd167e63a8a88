"""Tests for :func:`svseg.networks.fast_mode` (the opt-in bf16 autocast path).

Inputs are synthetic random tensors (dtype, structure and closeness checks, not accuracy on real data: the
accuracy cost on the demo's real MNI152 data is measured in ``docs/benchmarks.md``).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from svseg.networks import SA2Net, SvANet, fast, fast_mode, is_fast_mode

ROOT = Path(__file__).resolve().parents[2]
# torch.compile's CPU backend builds C++ with g++ (an apt package: apt-get install g++)
needs_cxx = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                               reason="torch.compile on a CPU needs a C++ compiler: apt-get install g++ (or set CXX)")


@pytest.fixture(autouse=True)
def bf16_everywhere(monkeypatch, request):
    """The behaviour tests run on any CPU: bf16 is emulated (slowly) where the CPU lacks it, which tiny networks
    afford; the support check itself is tested with the real answer and with both answers forced."""
    if "real_bf16_check" not in request.keywords:
        monkeypatch.setattr(fast, "bf16_supported", lambda device_type="cpu": True)


def _sa2net() -> SA2Net:
    torch.manual_seed(0)
    return SA2Net(spatial_dims=2, in_channels=1, out_channels=2, features=8)


def test_fast_mode_keeps_weights_and_state_dict():
    net = _sa2net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert fast_mode(net) is net and is_fast_mode(net)
    after = net.state_dict()
    assert list(after) == list(before)
    for k, v in after.items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k
    # a checkpoint of the fast network loads into a plain one and back
    plain = _sa2net()
    plain.load_state_dict(after)
    assert not is_fast_mode(plain)


def test_fast_mode_outputs_fp32_same_structure_close_to_fp32():
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    ref = _sa2net().train()
    fast = fast_mode(_sa2net().train())
    out_ref, out_fast = ref(x), fast(x)
    # deep supervision in train mode: a tuple of four outputs on both paths, all fp32
    assert isinstance(out_fast, tuple) and len(out_fast) == len(out_ref) == 4
    for r, f in zip(out_ref, out_fast):
        assert f.dtype == torch.float32 and f.shape == r.shape
        # bf16 keeps 8 bits of mantissa: close, not equal
        assert not torch.equal(r, f)
        assert (r - f).abs().max() <= 0.05 * r.abs().max()
    ref.eval(), fast.eval()
    with torch.no_grad():
        r, f = ref(x), fast(x)
    assert isinstance(f, torch.Tensor) and f.dtype == torch.float32
    assert (r.argmax(1) == f.argmax(1)).float().mean() > 0.95


def test_fast_mode_trains_with_fp32_gradients():
    net = fast_mode(_sa2net().train())
    x = torch.randn(2, 1, 32, 32)
    loss = sum(o.float().mean() for o in net(x))
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_fast_mode_disabled_idempotent_and_copyable():
    net = _sa2net()
    assert fast_mode(net, enabled=False) is net and not is_fast_mode(net)
    fast_mode(net)
    inner = net.forward
    fast_mode(net)
    assert net.forward is inner  # a second call does not wrap twice
    twin = copy.deepcopy(net)
    assert is_fast_mode(twin)
    twin.eval(), net.eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(twin(x), net(x))
    # the copy's forward is bound to the copy, not to the original
    with torch.no_grad():
        for p in twin.parameters():
            p.zero_()
        assert not torch.equal(twin(x), net(x))


def test_fast_mode_channels_last():
    net = fast_mode(_sa2net().eval(), channels_last=True)
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    with torch.no_grad():
        out = net(torch.randn(1, 1, 32, 32))
    assert out.dtype == torch.float32 and out.shape == (1, 2, 32, 32)


@pytest.mark.parametrize("bundle", ["svanet", "msa2net", "afma", "sa2net", "msga"])
def test_bundle_fast_mode_flag(bundle):
    """Every bundle's train.json and inference.json have ``fast_mode`` and ``compile`` off by default and pass
    them to ``fast_mode`` when they build ``network`` (the multi-GPU config wraps the same expression in DDP)."""
    configs = ROOT / "bundles" / bundle / "configs"
    for name in ("train.json", "inference.json"):
        config = json.loads((configs / name).read_text())
        assert config["fast_mode"] is False and config["compile"] is False, name
        assert config["network"] == "$svnets.fast_mode(@network_def.to(@torch_device), @fast_mode, compile=@compile)", name
    ddp = json.loads((configs / "multi_gpu_train.json").read_text())
    assert ddp["network"]["module"] == "$svnets.fast_mode(@network_def.to(@torch_device), @fast_mode, compile=@compile)"


@pytest.mark.parametrize("fast,compile", [(False, False), (True, False), (False, True)])
def test_bundle_builds_fast_network_on_request(fast, compile):
    """The flags reach the built network (SA2-Net's bundle, narrowed to 8 features to stay quick)."""
    parser = ConfigParser(json.loads((ROOT / "bundles" / "sa2net" / "configs" / "inference.json").read_text()))
    parser.update({"dataset_name": "demo", "device": "cpu", "network_def#features": 8, "fast_mode": fast,
                   "compile": compile})
    net = parser.get_parsed_content("network")
    assert isinstance(net, SA2Net) and is_fast_mode(net) is (fast or compile)
    if fast or compile:
        assert net.forward.compile is compile and net.forward.dtype == (torch.bfloat16 if fast else None)


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.GELU(),
                               torch.nn.Conv2d(4, 2, 1))


@needs_cxx
def test_compile_at_fp32_keeps_outputs_keys_and_meta():
    """``compile=True`` alone: fp32 (no autocast, no bf16 check), the outputs of the eager module to float32
    rounding, the same ``state_dict`` keys (no ``_orig_mod.`` prefix), MetaTensor in -> MetaTensor out with the
    input's meta, and a deep copy that compiles its own forward (bound to the copy)."""
    from monai.data import MetaTensor

    eager, net = _tiny().eval(), fast_mode(_tiny().eval(), enabled=False, compile=True)
    assert is_fast_mode(net) and net.forward.dtype is None
    assert list(net.state_dict()) == list(eager.state_dict())
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, out = eager(x), net(x)
        assert net.forward.compiled is not None  # it did go through torch.compile
        assert out.dtype == torch.float32 and torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
        meta = MetaTensor(x, affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])), meta={"filename_or_obj": "a.nii"})
        out_meta = net(meta)
        assert isinstance(out_meta, MetaTensor) and out_meta.meta["filename_or_obj"] == "a.nii"
        assert torch.equal(out_meta.affine, meta.affine) and torch.allclose(out_meta.as_tensor(), ref, rtol=1e-5, atol=1e-6)
        twin = copy.deepcopy(net)
        assert twin.forward.compiled is None  # a compiled function is never copied, it is rebuilt
        for p in twin.parameters():
            p.zero_()
        assert torch.equal(twin(x), torch.zeros_like(ref) + twin[3].bias.view(1, -1, 1, 1))
        assert torch.allclose(net(x), ref, rtol=1e-5, atol=1e-6)  # the original is untouched


@needs_cxx
def test_compile_freeze_is_inference_only_and_never_stale():
    """``compile="freeze"`` (inductor's freezing: weights folded into the graph): the eager outputs under
    ``torch.no_grad``; a forward with gradients is refused, and so is a forward after the weights changed in place
    (an optimiser step, ``load_state_dict``), where a frozen graph would go on computing with the old weights."""
    eager, net = _tiny().eval(), fast_mode(_tiny().eval(), enabled=False, compile="freeze")
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(net(x), eager(x), rtol=1e-5, atol=1e-6)
        assert torch.allclose(net(x), eager(x), rtol=1e-5, atol=1e-6)  # the same weights: the frozen graph again
    with pytest.raises(RuntimeError, match="compile=freeze is for inference"):
        net(x)
    state = {k: v + 1 if v.is_floating_point() else v for k, v in eager.state_dict().items()}
    net.load_state_dict(state)
    with torch.no_grad(), pytest.raises(RuntimeError, match="weights changed after its graph was frozen"):
        net(x)
    with pytest.raises(ValueError, match="compile must be one of"):
        fast_mode(_tiny(), compile="max-autotune")


def test_compile_without_a_cpp_compiler_refuses_at_once(monkeypatch):
    """torch.compile's CPU backend builds C++: with no compiler, fast_mode says so before any forward."""
    monkeypatch.setenv("CXX", "no-such-compiler-svseg")
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler and 'no-such-compiler-svseg' was not found"):
        fast_mode(_tiny(), enabled=False, compile=True)


def test_svanet_fast_mode_runs_at_bf16():
    """SvANet's AssembleFormer (linear attention) under autocast: fp32 out, finite, same shape."""
    net = fast_mode(SvANet(spatial_dims=2, in_channels=3, out_channels=2, base_width=8, aspp_channels=32).eval())
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    assert out.dtype == torch.float32 and out.shape == (1, 2, 64, 64) and torch.isfinite(out).all()


@pytest.mark.real_bf16_check
def test_fast_mode_refuses_a_device_without_bf16(monkeypatch):
    """No silent slow path: on a CPU without native bf16 (AVX2 only), fast_mode raises and says why."""
    monkeypatch.setattr(fast, "bf16_supported", lambda device_type="cpu": False)
    with pytest.raises(RuntimeError, match="no native bf16 arithmetic.*run without --fast"):
        fast_mode(_sa2net())
    net = _sa2net()
    assert fast_mode(net, enabled=False) is net  # the default path never asks
    monkeypatch.setattr(fast, "bf16_supported", lambda device_type="cpu": device_type == "cpu")
    net = fast_mode(_sa2net())
    net.forward.checked.clear()
    monkeypatch.setattr(fast, "bf16_supported", lambda device_type="cpu": False)
    with pytest.raises(RuntimeError, match="no native bf16"):  # checked again at the first forward
        net(torch.randn(1, 1, 32, 32))


@pytest.mark.real_bf16_check
def test_bf16_supported_answers_for_this_machine():
    """The real check runs and answers a bool (True on AVX-512 BF16 / AMX CPUs, False on AVX2-only ones)."""
    answer = fast.bf16_supported("cpu")
    assert isinstance(answer, bool)
    assert fast.bf16_supported("no-such-device") is False


@pytest.mark.slow
@needs_cxx
def test_predict_compile_matches_eager_on_real_data(tmp_path, capsys):
    """``svseg predict --compile`` and ``--compile freeze`` on a real scan (the tiny MNI152 demo set): the same
    label map and float32 probabilities (to float32 rounding) as the eager fp32 run, with the same geometry. The checkpoint is a seeded,
    untrained SA2-Net narrowed to 8 features (compiling the full one takes minutes on 2 cores); what is tested is
    the compiled path through the bundle's inference.json, its inferer, its MetaTensor handling and its writer."""
    import nibabel as nib
    import numpy as np

    from svseg.bundle import bundle_dir
    from svseg.cli import main
    from svseg.data import datalist_for, prepare_demo

    root = prepare_demo(tmp_path / "demo", tiny=True)
    image = Path(datalist_for("demo", str(root), "test")[0]["image"])
    parser = ConfigParser(json.loads((bundle_dir("sa2net") / "configs" / "inference.json").read_text()))
    parser.update({"dataset_name": "demo", "data_root": str(root), "network_def#features": 8})
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "model.pt")
    common = ["--bundle", "sa2net", "--input", str(image), "--checkpoint", str(tmp_path / "model.pt"),
              "--device", "cpu", "--dataset", "demo", "--override", f"data_root={root}",
              "--override", "network_def#features=8", "--save-probabilities", "--probabilities-dtype", "float32"]
    assert main(["predict", *common, "--output", str(tmp_path / "eager")]) == 0
    assert main(["predict", *common, "--compile", "--output", str(tmp_path / "compiled")]) == 0
    assert main(["predict", *common, "--compile", "freeze", "--output", str(tmp_path / "frozen")]) == 0
    capsys.readouterr()
    name = image.name.replace(".nii.gz", "")
    runs = ("eager", "compiled", "frozen")
    seg = {k: nib.load(tmp_path / k / f"{name}_seg.nii.gz") for k in runs}
    labels = {k: np.asarray(v.dataobj) for k, v in seg.items()}
    probs = {k: np.load(tmp_path / k / f"{name}.npz")["probabilities"] for k in runs}
    assert probs["eager"].dtype == np.float32
    for k in runs[1:]:
        np.testing.assert_allclose(seg[k].affine, seg["eager"].affine, atol=1e-6)
        assert probs[k].shape == probs["eager"].shape and (labels[k] == labels["eager"]).mean() > 0.9999
    # an untrained network's labels are all background here and its probabilities vary little over the scan
    # (standard deviation ~2e-4 per class), so the comparison is tight: 1e-5 is float32 rounding, a tenth of
    # the spatial variation that any wrong computation (an ignored input, a stale or missing layer) would show
    spread = probs["eager"].reshape(probs["eager"].shape[0], -1).std(axis=1).max()
    assert spread > 1e-4
    for k in runs[1:]:
        assert np.abs(probs["eager"] - probs[k]).max() < 1e-5, k
