"""The network: shapes, the presence mask, the HAR-X start, per-horizon shrinkage, untrained channels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model.nn.checkpoint import build_model
from model.nn.configs import TINY
from model.nn.spec import model_spec
from model.nn.train import _meta_stub, base_channels, init_params, predict_fn, shrink

SPEC = model_spec(60 * 10**9, window=TINY.window)
T, C, H = SPEC.window, len(SPEC.channels), len(SPEC.horizons)


BASES = base_channels(SPEC)
_GRAPH, _ = nnx.split(build_model(_meta_stub(SPEC, TINY, BASES, None), init_params(SPEC, TINY, BASES, seed=0)))
PREDICT = jax.jit(predict_fn(_GRAPH))  # one compiled function; every test passes its own state
B = 4  # one batch shape for every test: one compile


def make(params=None):
    params = params if params is not None else init_params(SPEC, TINY, BASES, seed=0)
    _, state = nnx.split(build_model(_meta_stub(SPEC, TINY, BASES, None), params))
    return PREDICT, state, params


def norm_args(trained=None):
    trained = np.ones(C, np.float32) if trained is None else trained
    return jnp.zeros(C), jnp.ones(C), jnp.asarray(trained, dtype=jnp.float32)


def batch(b=B, seed=0):
    assert b == B
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, T, C)).astype(np.float32), rng.random((b, T, C)) > 0.3


def test_output_shapes_and_ordered_quantiles():
    f, state, _ = make()
    x, m = batch()
    out = f(state, *norm_args(), x, m)
    assert out["rv_mean"].shape == (B, H) and out["rv_loc"].shape == (B, H)
    assert out["rv_quantiles"].shape == (B, H, 3)
    q = np.asarray(out["rv_quantiles"])
    assert (q[..., 0] < q[..., 1]).all() and (q[..., 1] < q[..., 2]).all()


def test_values_under_a_false_mask_do_not_matter():
    f, state, params = make()
    params = jax.tree.map(lambda a: a + 0.05 * np.random.default_rng(1).normal(size=np.shape(a)), params)
    f, state, _ = make(params)
    x, m = batch()
    noisy = np.where(m, x, 1e3 * np.random.default_rng(2).normal(size=x.shape)).astype(np.float32)
    a, b = f(state, *norm_args(), x, m), f(state, *norm_args(), noisy, m)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-6, atol=1e-6)


def test_presence_itself_is_an_input():
    f, state, params = make()
    params = jax.tree.map(lambda a: a + 0.05 * np.random.default_rng(1).normal(size=np.shape(a)), params)
    f, state, _ = make(params)
    x, m = batch()
    hidden = m.copy()
    hidden[:, :, 0] = False
    x0 = np.where(m, x, 0).astype(np.float32)
    x0[:, :, 0] = 0.0  # the same zero value, present or not
    m_present = hidden.copy()
    m_present[:, :, 0] = True
    a = f(state, *norm_args(), x0, hidden)["rv_loc"]
    b = f(state, *norm_args(), x0, m_present)["rv_loc"]
    assert not np.allclose(np.asarray(a), np.asarray(b))


def test_channels_never_seen_in_training_are_ignored():
    f, state, params = make()
    params = jax.tree.map(lambda a: a + 0.05 * np.random.default_rng(1).normal(size=np.shape(a)), params)
    f, state, _ = make(params)
    trained = np.ones(C, np.float32)
    book = [i for i, c in enumerate(SPEC.channels) if c in ("log_spread", "imbalance_l1", "ofi")]
    trained[book] = 0.0
    x, m = batch()
    absent = m.copy()
    absent[..., book] = False
    a = f(state, *norm_args(trained), x, m)["rv_mean"]
    b = f(state, *norm_args(trained), x, absent)["rv_mean"]
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def test_an_untrained_network_is_its_linear_base():
    f, state, params = make()
    rng = np.random.default_rng(3)
    bases = list(base_channels(SPEC))
    params["base"]["kernel"] = rng.normal(size=(len(bases), H)).astype(np.float32)
    params["base"]["bias"] = rng.normal(size=H).astype(np.float32)
    params["smearing"] = np.full(H, 0.3, np.float32)
    f, state, _ = make(params)
    x, m = batch()
    out = f(state, *norm_args(), x, m)
    last = np.where(m[:, -1], x[:, -1], 0.0)[:, bases]
    expected = last @ params["base"]["kernel"] + params["base"]["bias"]
    np.testing.assert_allclose(np.asarray(out["rv_loc"]), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["rv_mean"]), expected + 0.3, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("g", [0.0, 0.5, 1.0])
def test_shrinkage_interpolates_each_horizon_between_start_and_trained(g):
    _, _, start = make()
    trained = jax.tree.map(lambda a: a + 0.1 * np.random.default_rng(4).normal(size=np.shape(a)), start)
    x, m = batch()
    f0, s0, _ = make(shrink(trained, start, np.zeros(H)))
    f1, s1, _ = make(shrink(trained, start, np.ones(H)))
    fg, sg, _ = make(shrink(trained, start, np.full(H, g)))
    fm, sm, _ = make(shrink(trained, start, np.array([0.0, 1.0, g, 0.0])))
    o0, o1 = (np.asarray(f(s, *norm_args(), x, m)["rv_mean"]) for f, s in ((f0, s0), (f1, s1)))
    og = np.asarray(fg(sg, *norm_args(), x, m)["rv_mean"])
    om = np.asarray(fm(sm, *norm_args(), x, m)["rv_mean"])
    np.testing.assert_allclose(og, o0 + g * (o1 - o0), rtol=1e-4, atol=1e-4)  # linear in g, horizon by horizon
    np.testing.assert_allclose(om[:, 1], o1[:, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(om[:, 3], o0[:, 3], rtol=1e-5, atol=1e-5)
