"""VolumeSliceInferer / VolumeInferer behaviour on small synthetic volumes with tiny networks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from scipy.ndimage import gaussian_filter, zoom

from svseg.inference import VolumeSliceInferer, VolumeInferer


def _tiny_net(spatial_dims=2, in_ch=1, out_ch=3, seed=0):
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
    return torch.nn.Sequential(conv(in_ch, 4, 3, padding=1), torch.nn.ReLU(), conv(4, out_ch, 3, padding=1)).eval()


class _Pointwise(torch.nn.Module):
    """1x1 'network': logits_k = w_k * x + b_k (flip-equivariant, smooth decision boundaries)."""

    def __init__(self, k=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, k, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.linspace(-4, 4, k).view(k, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([2.0, 0.0, -2.5][:k]))

    def forward(self, x):
        return self.conv(x)


def _volume(shape=(1, 1, 40, 36, 6), seed=0):
    """Synthetic smooth volume in [0, 1]."""
    rng = np.random.default_rng(seed)
    v = gaussian_filter(rng.normal(size=shape[2:]), 3)
    v = (v - v.min()) / (v.max() - v.min())
    return torch.as_tensor(np.broadcast_to(v, shape).copy(), dtype=torch.float32)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_resize_mode_equals_manual_slice_loop(axis):
    net = _tiny_net()
    x = torch.cat([_volume(), _volume(seed=1)])  # B = 2
    inferer = VolumeSliceInferer(roi_size=(32, 32), axis=axis, batch_size=5, mode="resize")
    out = inferer(x, net)
    assert out.shape == (2, 3, 40, 36, 6)
    expected = torch.zeros_like(out)
    with torch.no_grad():
        for b in range(2):
            for k in range(x.shape[2 + axis]):
                sl = x[b:b + 1].select(2 + axis, k)
                y = net(F.interpolate(sl, size=(32, 32), mode="bilinear", align_corners=False))
                y = F.interpolate(y, size=sl.shape[2:], mode="bilinear", align_corners=False)
                idx = [slice(b, b + 1), slice(None), slice(None), slice(None), slice(None)]
                idx[2 + axis] = k
                expected[tuple(idx)] = y
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_sliding_window_mode_equals_monai_per_slice():
    net = _tiny_net()
    x = _volume((1, 1, 50, 44, 3))
    out = VolumeSliceInferer(roi_size=(24, 24), axis=2, batch_size=4, mode="sliding_window", overlap=0.5)(x, net)
    with torch.no_grad():
        for k in range(3):
            ref = sliding_window_inference(x[..., k], (24, 24), 4, net, overlap=0.5, mode="gaussian")
            torch.testing.assert_close(out[..., k], ref, rtol=1e-5, atol=1e-5)
    # slices smaller than the ROI are padded by the sliding window and come back at their own size
    small = VolumeSliceInferer(roi_size=(64, 64), mode="sliding_window")(x, net)
    assert small.shape == (1, 3, 50, 44, 3)


def _reference_test_single_volume(volume_dhw: np.ndarray, net, patch=(32, 32), normalize=True):
    """The TransUNet/MSA2Net per-slice loop (slices along axis 0, batch 1, scipy zoom), for comparison."""
    prediction = np.zeros(volume_dhw.shape, dtype=np.int64)
    for ind in range(volume_dhw.shape[0]):
        sl = volume_dhw[ind]
        x, y = sl.shape
        if (x, y) != patch:
            sl = zoom(sl, (patch[0] / x, patch[1] / y), order=3)
        inp = torch.from_numpy(sl).unsqueeze(0).unsqueeze(0).float()
        if normalize:
            inp = (inp - 0.5) / 0.5
        with torch.no_grad():
            out = torch.argmax(torch.softmax(net(inp), dim=1), dim=1).squeeze(0).numpy()
        prediction[ind] = zoom(out, (x / patch[0], y / patch[1]), order=0) if (x, y) != patch else out
    return prediction


def test_transunet_mode_reproduces_test_single_volume_exactly():
    net = _tiny_net(out_ch=4, seed=3)
    vol = _volume((1, 1, 5, 45, 38), seed=2)  # (B, C, D, H, W): slices along spatial axis 0
    expected = _reference_test_single_volume(vol[0, 0].numpy(), net)
    scores = VolumeSliceInferer(roi_size=(32, 32), axis=0, batch_size=3, mode="transunet", normalize=(0.5, 0.5))(vol, net)
    assert scores.shape == (1, 4, 5, 45, 38)
    assert torch.all(scores.sum(1) == 1)  # one-hot
    np.testing.assert_array_equal(scores.argmax(1)[0].numpy(), expected)


def test_transunet_torch_backend_agrees_and_is_exact_without_resize():
    net = _Pointwise()
    vol = _volume((1, 1, 70, 64, 4), seed=5)
    ref = VolumeSliceInferer(roi_size=(32, 32), mode="transunet", zoom_backend="scipy")(vol, net).argmax(1)
    fast = VolumeSliceInferer(roi_size=(32, 32), mode="transunet", zoom_backend="torch", batch_size=4)(vol, net).argmax(1)
    assert (ref == fast).float().mean() > 0.99
    # at the ROI size no zoom happens: both backends are the same computation
    vol2 = _volume((1, 1, 32, 32, 3), seed=6)
    a = VolumeSliceInferer(roi_size=(32, 32), mode="transunet")(vol2, _tiny_net())
    b = VolumeSliceInferer(roi_size=(32, 32), mode="transunet", zoom_backend="torch")(vol2, _tiny_net())
    torch.testing.assert_close(a, b)


def test_tta_averages_flipped_logits():
    net = _tiny_net(seed=4)
    x = _volume((1, 1, 24, 20, 2))
    out = VolumeSliceInferer(roi_size=(24, 20), mode="resize", tta=True)(x, net)
    with torch.no_grad():
        sl = x[..., 0]
        manual = (net(sl) + net(sl.flip(2)).flip(2) + net(sl.flip(3)).flip(3) + net(sl.flip(2, 3)).flip(2, 3)) / 4
    torch.testing.assert_close(out[..., 0], manual, rtol=1e-5, atol=1e-5)
    # a flip-equivariant network gives the same result with and without TTA
    pw = _Pointwise()
    torch.testing.assert_close(
        VolumeSliceInferer(roi_size=(24, 20), tta=True)(x, pw), VolumeSliceInferer(roi_size=(24, 20))(x, pw), rtol=1e-5, atol=1e-5
    )


def test_2d_input_metatensor_and_train_mode_tuple_output():
    from monai.data import MetaTensor

    class TupleNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _tiny_net()

        def forward(self, x):
            y = self.net(x)
            return y, y * 0

    x = MetaTensor(_volume((2, 1, 30, 30, 1))[..., 0], affine=torch.eye(4))
    out = VolumeSliceInferer(roi_size=(16, 16), batch_size=1)(x, TupleNet())
    assert out.shape == (2, 3, 30, 30) and not out.requires_grad
    half = VolumeSliceInferer(roi_size=(16, 16), output_dtype=torch.float16, channels_last=True)(x, TupleNet())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), out, rtol=1e-2, atol=1e-2)


def test_usable_as_supervised_evaluator_inferer():
    from ignite.engine import Events
    from monai.engines import SupervisedEvaluator

    data = [{"image": _volume((1, 1, 20, 20, 3))[0], "label": torch.zeros(1, 20, 20, 3)}]
    loader = torch.utils.data.DataLoader(data, batch_size=1)
    net = _tiny_net()
    seen = {}
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=loader, network=net,
        inferer=VolumeSliceInferer(roi_size=(16, 16), batch_size=2),
    )

    @evaluator.on(Events.ITERATION_COMPLETED)
    def _grab(engine):
        seen["pred"] = engine.state.output[0]["pred"]

    evaluator.run()
    assert seen["pred"].shape == (3, 20, 20, 3)


def test_volume_inferer_with_tta():
    net = _tiny_net(spatial_dims=3, out_ch=2)
    x = torch.rand(1, 1, 20, 18, 16)
    plain = VolumeInferer((12, 12, 12), overlap=0.25)(x, net)
    assert plain.shape == (1, 2, 20, 18, 16)
    with torch.no_grad():
        ref = sliding_window_inference(x, (12, 12, 12), 1, net, overlap=0.25, mode="gaussian")
    torch.testing.assert_close(plain, ref)
    tta = VolumeInferer((12, 12, 12), overlap=0.25, tta=True, tta_axes=(0,))(x, net)
    with torch.no_grad():
        flipped = sliding_window_inference(x.flip(2), (12, 12, 12), 1, net, overlap=0.25, mode="gaussian").flip(2)
    torch.testing.assert_close(tta, (ref + flipped) / 2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"roi_size": (0, 4)}, "roi_size"),
        ({"axis": 3}, "axis"),
        ({"batch_size": 0}, "batch_size"),
        ({"mode": "patch"}, "mode"),
        ({"overlap": 1.0}, "overlap"),
        ({"mode": "transunet", "tta": True}, "tta"),
        ({"zoom_backend": "cv2"}, "zoom_backend"),
        ({"normalize": (0.5, 0.0)}, "normalize"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VolumeSliceInferer(**kwargs)


def test_invalid_input():
    with pytest.raises(ValueError, match="inputs"):
        VolumeSliceInferer()(torch.zeros(1, 1, 4), _tiny_net())
    with pytest.raises(ValueError, match="tta_axes"):
        VolumeSliceInferer(tta=True, tta_axes=(2,))


@pytest.mark.parametrize("mode", ["resize", "sliding_window", "transunet"])
def test_predict_labels_equals_argmax_of_scores(mode):
    net = _tiny_net(out_ch=4, seed=8)
    x = torch.cat([_volume((1, 1, 40, 30, 5), seed=1), _volume((1, 1, 40, 30, 5), seed=2)])
    inferer = VolumeSliceInferer(roi_size=(24, 24), axis=1, batch_size=7, mode=mode)  # batches straddle the two items
    labels = inferer.predict_labels(x, net)
    assert labels.shape == (2, 40, 30, 5) and labels.dtype == torch.uint8
    torch.testing.assert_close(labels.long(), inferer(x, net).argmax(1))


def test_argmax_channels_matches_torch_with_ties():
    from svseg.inference import argmax_channels

    a = torch.randn(3, 6, 9, 7)
    a[:, 3] = a[:, 1]  # exact ties: the first index wins, as torch.argmax
    torch.testing.assert_close(argmax_channels(a), torch.argmax(a, 1))


def test_bfloat16_autocast_close_to_float32():
    net = _tiny_net()
    x = _volume((1, 1, 32, 32, 2))
    full = VolumeSliceInferer(roi_size=(32, 32))(x, net)
    half = VolumeSliceInferer(roi_size=(32, 32), amp_dtype=torch.bfloat16)(x, net)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=0.05, atol=0.05)


def test_bundle_config_instantiation():
    """As a bundle's inference.json would build it (lists and dtype names from JSON)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(
        {"inferer": {"_target_": "svseg.inference.VolumeSliceInferer", "roi_size": [16, 16], "axis": 2, "batch_size": 4,
                     "mode": "resize", "amp_dtype": "bfloat16", "output_dtype": "float16"}}
    )
    inferer = parser.get_parsed_content("inferer")
    assert inferer.amp_dtype is torch.bfloat16 and inferer.output_dtype is torch.float16
    assert inferer(_volume((1, 1, 20, 20, 2)), _tiny_net()).shape == (1, 3, 20, 20, 2)
    with pytest.raises(ValueError, match="amp_dtype"):
        VolumeSliceInferer(amp_dtype="float99")
