"""sipd.nets: the catalog, shapes, ONNX export and honest receptive margins."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from sipd.errors import InvalidArgument
from sipd.nets import ARCHS, build_net, default_params
from sipd.training import check_onnx_export, export_onnx

# Small variants keep the tests fast; the defaults are covered by
# test_default_nets_build (shapes and margins only).
SMALL = {
    "unet": {"base_channels": 4, "depth": 2},
    "patchcnn": {"width": 8, "blocks": 2},
    "spectral": {"hidden": 8, "layers": 2},
}


@pytest.fixture(autouse=True)
def one_thread():
    # The machine is shared; one thread is faster than two contended ones.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_catalog_lists_three_architectures():
    assert ARCHS == ("unet", "patchcnn", "spectral")
    assert default_params("unet") == {"base_channels": 16, "depth": 3, "bank_sigmas": (1.0, 3.5)}


def test_architecture_names_import_without_torch():
    # The daemon validates names with the catalog and must never load torch.
    code = (
        "import sys; from sipd.nets.catalog import ARCHS, check_arch; check_arch('unet'); "
        "print(len(ARCHS), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["3", "False"]


@pytest.mark.parametrize("name", ARCHS)
def test_default_nets_build(name):
    torch.manual_seed(0)
    net = build_net(name, 5, 4).eval()
    m = net.size_multiple
    with torch.no_grad():
        out = net(torch.randn(2, 5, 3 * m if m > 1 else 13, 2 * m if m > 1 else 7))
    assert out.shape[:2] == (2, 4)
    assert out.shape[2:] == ((3 * m, 2 * m) if m > 1 else (13, 7))
    assert net.receptive_margin >= 0 and net.hparams == default_params(name)
    # Every net states the halo a grid-aligned tile needs; never more than the full margin.
    assert 0 <= net.seamless_margin <= net.receptive_margin


@pytest.mark.parametrize("name", ARCHS)
def test_export_matches_torch_with_dynamic_sizes(name, tmp_path):
    torch.manual_seed(1)
    net = build_net(name, 3, 4, **SMALL[name])
    # Non-trivial BatchNorm statistics, so normalization layers are exercised.
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(2, 3, 32, 32) * 2 + 1)
    net.eval()
    mean, std = [100.0, 200.0, 300.0], [10.0, 20.0, 30.0]
    path = export_onnx(net, mean, std, tmp_path / "m.onnx")
    check = check_onnx_export(net, mean, std, path)
    assert check["max_abs_diff"] < 1e-4

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["labels", "confidence", "probabilities"]
    # Another batch size and a non-square size than the export example.
    m = net.size_multiple
    h, w = 5 * m if m > 1 else 17, 3 * m if m > 1 else 9
    rng = np.random.default_rng(0)
    x = (np.array(mean)[None, :, None, None] + rng.standard_normal((3, 3, h, w)) * 15).astype(
        np.float32
    )
    labels, conf, probs = session.run(None, {"input": x})
    assert labels.dtype == np.uint8 and labels.shape == (3, h, w)
    assert conf.dtype == np.float32 and conf.shape == (3, h, w)
    assert probs.dtype == np.float32 and probs.shape == (3, 4, h, w)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert labels.min() >= 1 and labels.max() <= 4
    with torch.no_grad():
        logits = net((torch.from_numpy(x) - torch.tensor(mean).view(1, -1, 1, 1))
                     / torch.tensor(std).view(1, -1, 1, 1))
    assert np.abs(torch.softmax(logits, 1).numpy() - probs).max() < 1e-4
    assert np.array_equal(logits.argmax(1).numpy() + 1, labels)


@pytest.mark.parametrize(
    "name,params",
    [("unet", {"base_channels": 4, "depth": 3, "bank_sigmas": ()}),
     ("unet", {"base_channels": 4, "depth": 1, "bank_sigmas": ()}),
     ("unet", {"base_channels": 4, "depth": 2}),
     ("patchcnn", SMALL["patchcnn"]), ("spectral", SMALL["spectral"])],
)
def test_receptive_margin_is_honest(name, params):
    """Perturbing one input pixel changes no output pixel farther than the margin."""
    torch.manual_seed(2)
    # float64: no Winograd-style kernels whose rounding could leak across tiles.
    net = build_net(name, 2, 3, **params).double().eval()
    margin, multiple = net.receptive_margin, net.size_multiple
    size = -(-(2 * margin + 2 * multiple + 8) // multiple) * multiple
    x = torch.randn(1, 2, size, size, dtype=torch.float64)
    farthest = 0
    with torch.no_grad():
        base = net(x)
        # Every offset within the pooling block: the field depends on it.
        for off in range(multiple):
            r, c = size // 2 + off, size // 2 - off
            y = x.clone()
            y[0, :, r, c] += 50.0
            changed = (net(y) - base).abs().amax(dim=1)[0] > 1e-9
            rows, cols = torch.nonzero(changed, as_tuple=True)
            assert rows.numel() > 0
            dist = torch.maximum((rows - r).abs(), (cols - c).abs()).max()
            farthest = max(farthest, int(dist))
    assert farthest <= margin
    # Honest but not absurdly loose: the margin is actually reached. A filter bank's
    # Gaussian tails (4 sigma out) fade below any threshold after the U-Net's layers,
    # so with a bank only the U-Net's own reach must show (the halo test of
    # test_inference_unet checks the bank's share exactly).
    if getattr(net, "bank", None) is None:
        assert farthest == margin
    else:
        assert farthest >= margin - net.bank.receptive_margin


def test_unknown_architecture_and_parameter_are_invalid_argument():
    with pytest.raises(InvalidArgument, match="accepted: unet, patchcnn, spectral"):
        build_net("resnet", 3, 2)
    with pytest.raises(InvalidArgument, match="base_channels"):
        build_net("unet", 3, 2, width=8)
    with pytest.raises(InvalidArgument):
        build_net("unet", 3, 2, depth=0)
    with pytest.raises(InvalidArgument, match="must be of type int"):
        build_net("unet", 3, 2, depth=2.5)


def test_params_from_json_are_coerced_to_their_types():
    net = build_net("unet", 3, 2, depth=2.0, base_channels="4", bank_sigmas=[1, 2.5])
    assert net.hparams == {"base_channels": 4, "depth": 2, "bank_sigmas": (1.0, 2.5)}
    assert net.size_multiple == 4
    with pytest.raises(InvalidArgument, match="bank_sigmas.*must be of type tuple"):
        build_net("unet", 3, 2, bank_sigmas="1,3")
    with pytest.raises(InvalidArgument, match="sigmas must be 1\\+ values in 0.3..20"):
        build_net("unet", 3, 2, bank_sigmas=[0.1])


def test_a_checkpoint_from_before_the_filter_bank_loads_without_it(tmp_path):
    """Cards and checkpoints written before `bank_sigmas` existed hold no such param:
    their net had no bank, whatever today's default is."""
    from sipd.training.checkpoint import checkpoint_payload, load_checkpoint

    old = build_net("unet", 3, 2, base_channels=4, depth=2, bank_sigmas=())
    payload = checkpoint_payload(
        old, old.state_dict(), arch="unet", in_channels=3, num_classes=2, best_epoch=1,
        normalization={"mean": [0.0] * 3, "std": [1.0] * 3}, bands=["a", "b", "c"],
        classes=[{"value": 1, "name": "x"}, {"value": 2, "name": "y"}])
    payload["architecture"]["params"] = {"base_channels": 4, "depth": 2}  # as written then
    torch.save(payload, tmp_path / "checkpoint.pt")
    net, _ = load_checkpoint(tmp_path)
    assert net.bank is None and net.hparams["bank_sigmas"] == ()
