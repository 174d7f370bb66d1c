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


def test_output_layer_is_the_last_layer_with_one_bias_per_class():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1,
                                                                                     bias=False))
    assert output_layer(net, 4) is net[2]
    assert output_layer(net, 5) is None
