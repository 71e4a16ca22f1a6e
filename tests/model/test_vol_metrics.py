"""QLIKE, MSE, pinball and Diebold-Mariano."""

from __future__ import annotations

import numpy as np
import pytest

from model.metrics import diebold_mariano, mse_var, pinball, qlike


def test_qlike_is_zero_at_the_truth_and_positive_elsewhere():
    assert qlike(2.0, 2.0) == 0.0
    assert (qlike([1.0, 1.0], [0.5, 2.0]) > 0).all()


def test_qlike_expected_loss_is_minimized_by_the_mean_of_the_proxy():
    # Patton's robustness: E[QLIKE(rv, f)] over a noisy unbiased proxy is smallest at f = E[rv].
    rng = np.random.default_rng(0)
    rv = rng.chisquare(5, 200_000) / 5 * 3.0
    grid = np.linspace(2.0, 4.0, 41)
    best = grid[np.argmin([qlike(rv, f).mean() for f in grid])]
    assert best == pytest.approx(rv.mean(), abs=0.05)


def test_qlike_refuses_non_positive_inputs():
    with pytest.raises(ValueError):
        qlike(1.0, 0.0)


def test_mse_and_pinball():
    assert mse_var([1.0, 3.0], [2.0, 2.0]).tolist() == [1.0, 1.0]
    assert pinball(1.0, 1.0, 0.5) == 0.0
    with pytest.raises(ValueError):
        pinball(1.0, 1.0, 1.0)


def test_diebold_mariano_sees_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(2, 5000))
    _, t_same = diebold_mariano(noise[0], noise[1], max_lag=10)
    _, t_diff = diebold_mariano(noise[0] + 0.2, noise[1], max_lag=10)
    assert abs(t_same) < 3 and t_diff > 5
