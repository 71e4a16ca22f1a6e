"""Tenor x delta resampling: delta strikes solve the delta equation, tenors interpolate in total variance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.surface.black import forward_delta
from model.surface.grid import d1_targets, resample
from model.surface.smile import Smile
from model.surface.svi import SVIParams

SHORT = Smile(svi=SVIParams(a=0.004, b=0.04, rho=-0.3, m=0.01, sigma=0.08))
LONG = Smile(svi=SVIParams(a=0.05, b=0.12, rho=-0.2, m=0.03, sigma=0.25))


def test_delta_strikes_have_their_delta():
    g = resample([(7 / 365, 100.0, SHORT), (60 / 365, 101.0, LONG)], tenors_days=(7, 30, 60))
    assert g["tenors_days"] == [7, 30, 60]
    targets = {"10P": -0.10, "25P": -0.25, "25C": 0.25, "10C": 0.10}
    for row_k, row_iv, days in zip(g["k"], g["iv"], g["tenors_days"]):
        t = days / 365
        for name, k, iv in zip(g["deltas"], row_k, row_iv):
            if name == "ATM":
                assert k == 0.0
                continue
            delta = forward_delta(np.array([k]), np.array([iv * math.sqrt(t)]), name.endswith("C"))[0]
            assert delta == pytest.approx(targets[name], abs=1e-9)


def test_tenors_interpolate_linearly_in_total_variance_and_stay_inside_the_chain():
    t1, t2 = 7 / 365, 60 / 365
    g = resample([(t1, 100.0, SHORT), (t2, 100.0, LONG)], tenors_days=(1, 30, 90))
    assert g["tenors_days"] == [30]
    t = 30 / 365
    x = (t - t1) / (t2 - t1)
    w = (1 - x) * SHORT.w(np.array([0.0]))[0] + x * LONG.w(np.array([0.0]))[0]
    assert g["atm"]["30d"] == pytest.approx(math.sqrt(w / t), rel=1e-12)
    assert g["strike"][0][2] == pytest.approx(100.0)


def test_rr_and_bf_follow_their_definitions():
    g = resample([(7 / 365, 100.0, SHORT), (60 / 365, 100.0, LONG)], tenors_days=(30,))
    iv = dict(zip(g["deltas"], g["iv"][0]))
    assert g["rr25"]["30d"] == pytest.approx(iv["25C"] - iv["25P"])
    assert g["bf25"]["30d"] == pytest.approx((iv["25C"] + iv["25P"]) / 2 - iv["ATM"])
    assert g["rr10"]["30d"] == pytest.approx(iv["10C"] - iv["10P"])
    assert g["rr25"]["30d"] < 0  # negative rho: puts richer


def test_d1_targets():
    d = d1_targets()
    assert d["25C"] == pytest.approx(-d["25P"]) and d["10C"] < d["25C"] < 0


def test_empty_surface_has_an_empty_grid():
    assert resample([])["tenors_days"] == []
