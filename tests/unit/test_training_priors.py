"""Class-prior correction after training (sipd/training/priors.py)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from sipd.training.priors import estimate_prior, output_layer, prior_shift


def balanced_logits(n: int, prior_1: float, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Logits of the exact Bayes classifier trained under a 50/50 prior, on pixels
    drawn from two unit Gaussians (means 0 and 2) with class 1 at `prior_1`."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) >= prior_1).astype(int)
    x = rng.normal(loc=2.0 * labels, scale=1.0)
    # log N(x; mu, 1) up to a shared constant: the calibrated logit under equal priors.
    logits = np.stack([-0.5 * x**2, -0.5 * (x - 2.0) ** 2], axis=1)
    return torch.from_numpy(logits), labels


def test_em_recovers_the_scenes_prior_from_calibrated_posteriors():
    logits, labels = balanced_logits(200_000, prior_1=0.8)
    q = estimate_prior(logits, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert abs(float(q[0]) - 0.8) < 0.01 and abs(float(q.sum()) - 1.0) < 1e-9


def test_the_shift_makes_the_bayes_decision_under_the_true_prior():
    logits, labels = balanced_logits(200_000, prior_1=0.8, seed=1)
    pi = torch.tensor([0.5, 0.5], dtype=torch.float64)
    shift = prior_shift(estimate_prior(logits, pi), pi)
    before = float((logits.argmax(1).numpy() == labels).mean())
    after = float(((logits + shift).argmax(1).numpy() == labels).mean())
    # The Bayes threshold under the 0.8/0.2 prior moves from x = 1 to 1 + ln(4) / 2.
    x_star = 1.0 + math.log(4.0) / 2.0
    expected = 0.8 * 0.5 * (1 + math.erf(x_star / math.sqrt(2))) + 0.2 * 0.5 * (
        1 + math.erf((2.0 - x_star) / math.sqrt(2)))
    assert after > before + 0.02
    assert abs(after - expected) < 0.005


def test_shift_is_bounded_and_zero_for_classes_without_labels():
    q = torch.tensor([0.98, 0.02, 0.0], dtype=torch.float64)
    pi = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    shift = prior_shift(q, pi)
    assert float(shift[2]) == 0.0
    assert float(shift[0]) == math.log(0.98 / 0.5) and float(shift[1]) < 0
    assert float(prior_shift(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]))[1]) == -4.0
    # EM with a class that had no training labels: finite, and that class stays at 0.
    logits = torch.randn(1000, 3, dtype=torch.float64)
    q = estimate_prior(logits, pi)
    assert torch.isfinite(q).all() and float(q[2]) == 0.0 and abs(float(q.sum()) - 1) < 1e-9


def test_output_layer_is_the_last_layer_with_one_bias_per_class():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1,
                                                                                     bias=False))
    assert output_layer(net, 4) is net[2]
    assert output_layer(net, 5) is None


def test_a_shift_that_gives_up_a_rare_class_is_cut_back():
    """The check is balanced accuracy: one labeled pixel of a rare class counts as much as
    hundreds of a common one's, so a shift that loses it is cut back (overall accuracy
    would lose 0.2% and let it pass)."""
    from sipd.training.data import TrainingData
    from sipd.training.priors import correct_priors

    k, size = 3, 32
    # The "net" is the identity on these logits: classes 1 and 2 are sure (left and right
    # half); class 3 holds 3 pixels with a small margin, too few for its clicked share.
    logits = torch.zeros(1, k, size, size)
    logits[0, 0, :, : size // 2] = 4.0
    logits[0, 1, :, size // 2 :] = 4.0
    logits[0, :2, 0, :3] = 0.0
    logits[0, 2, 0, :3] = 2.0
    train = torch.full((1, size, size), -1, dtype=torch.int64)
    train[0, 5, 4:7], train[0, 5, 20:23], train[0, 0, :3] = 0, 1, 2  # balanced clicks
    val = torch.full((1, size, size), -1, dtype=torch.int64)
    val[0, 10:20, 1:15], val[0, 10:20, 17:31] = 0, 1
    val[0, 0, 1] = 2
    net = nn.Conv2d(k, k, 1)
    with torch.no_grad():
        net.weight.copy_(torch.eye(k).view(k, k, 1, 1))
        net.bias.zero_()
    data = TrainingData(images=logits, train_targets=train, val_targets=val,
                        train_idx=np.array([0]), val_idx=np.array([0]), num_classes=k,
                        valid=torch.ones(1, size, size, dtype=torch.bool))  # fmt: skip
    record = correct_priors(net, data, torch.ones(k), torch.device("cpu"))
    assert record is not None and record["logit_shift"][2] < 0
    with torch.no_grad():
        predicted = net(logits).argmax(1)
    labeled = val != -1
    assert bool((predicted[labeled] == val[labeled]).all()), "every labeled pixel kept"
    assert record["check_accuracy"][1] >= record["check_accuracy"][0] - 0.005


def test_the_shift_through_cached_bank_features_equals_the_nets_own():
    """Training hands the prior shift the model it trained through (the filter bank's
    features cached as float16): the shift must be the one the net itself gives."""
    from sipd.nets.unet import UNet
    from sipd.progress import JobContext
    from sipd.training.data import TrainingData
    from sipd.training.loop import cached_features
    from sipd.training.priors import correct_priors

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    k, n, size = 3, 4, 32
    images = torch.from_numpy(rng.normal(size=(n, 2, size, size)).astype(np.float32))
    train = torch.full((n, size, size), -1, dtype=torch.int64)
    train[:, 3, :9] = torch.arange(9) % k  # balanced clicks
    val = torch.full((n, size, size), -1, dtype=torch.int64)
    val[:, 20, :9] = torch.arange(9) % k
    data = TrainingData(images=images, train_targets=train, val_targets=val,
                        train_idx=np.arange(n), val_idx=np.arange(n), num_classes=k,
                        valid=torch.ones(n, size, size, dtype=torch.bool))  # fmt: skip
    net = UNet(2, k, 8, 2, bank_sigmas=(1.0,)).eval()
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([1.5, 0.0, -1.5]))  # skewed: a shift to find
    state = {key: v.clone() for key, v in net.state_dict().items()}
    own = correct_priors(net, data, torch.ones(k), torch.device("cpu"))
    net.load_state_dict(state)
    model, features = cached_features(net, data, JobContext())
    assert features.images.dtype == torch.float16
    cached = correct_priors(model, features, torch.ones(k), torch.device("cpu"))
    assert own is not None and cached is not None
    np.testing.assert_allclose(cached["scene_prior"], own["scene_prior"], atol=2e-3)
    np.testing.assert_allclose(cached["logit_shift"], own["logit_shift"], atol=2e-2)
