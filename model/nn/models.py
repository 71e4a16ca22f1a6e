"""The attention forecaster network (Flax NNX modules only; STYLE #15).

Input: a window of bar rows ``x[B, T, C]`` (standardized, 0 where absent) and
its presence mask ``m[B, T, C]`` (1 present, 0 absent). Each row becomes a
token ``x W_x + m W_m + b + p_t``: the mask has its own embedding, so an absent
input is *seen* as absent rather than read as a zero. ``n_layers`` pre-LN
self-attention blocks may mix the tokens; a final pre-LN attention block reads
out the newest row, whose query attends over the whole window (the last-token
output of a transformer layer, computed for that token only).

Outputs, per horizon, in log variance relative to the window's reference
level (:mod:`model.nn.inputs`), as a dict of heads:

* ``"rv_loc"`` ``[B, H]``: the conditional mean of ln realized variance per bar;
* ``"rv_mean"`` ``[B, H]``: ln of the forecast mean of realized variance per bar,
  ``rv_loc`` plus a learned log-smearing term ``c`` (Duan 1983: for log
  residuals ``e``, ``E[RV] = exp(loc) E[exp(e)]``);
* ``"rv_quantiles"`` ``[B, H, 3]``: q10, q50, q90 of ln realized variance per bar.

HAR-residual (as HARNet, arXiv 2205.07719): every head is a linear HAR-X on the
newest row's lag and time-of-day channels (``base``, initialized from OLS by
:func:`model.nn.train.init_from_har`) plus a correction from the attention
readout through zero-initialized layers, so an untrained network *is* the HAR-X.
The smearing term sees the readout through a stop-gradient, so the heavy-tailed
QLIKE gradient that trains it never moves the location or the trunk.
More heads (ATM IV, RR25, BF25 changes) are more entries of ``heads``.

>>> import jax.numpy as jnp
>>> net = VolAttention(n_channels=5, window=4, n_horizons=2, base_channels=(1, 2), rngs=nnx.Rngs(0))
>>> out = net(jnp.zeros((3, 4, 5)), jnp.ones((3, 4, 5)))
>>> {k: v.shape for k, v in out.items()}
{'rv_loc': (3, 2), 'rv_mean': (3, 2), 'rv_quantiles': (3, 2, 3)}
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Network size; defaults fit the latency budget (research/models.md §5)."""

    d_model: int = 32  # token width
    n_heads: int = 4  # attention heads (d_model divisible by it)
    n_layers: int = 0  # full self-attention blocks before the readout block
    mlp_ratio: int = 2  # MLP hidden = mlp_ratio * d_model
    head_hidden: int = 32  # width of the hidden layer before the heads


def _softplus_inv(x: jax.Array | float) -> jax.Array:
    x = jnp.asarray(x)
    return x + jnp.log(-jnp.expm1(-x))


class _Attention(nnx.Module):
    """Multi-head attention of ``q_in[B, Q, d]`` over ``kv_in[B, T, d]``."""

    def __init__(self, d: int, heads: int, rngs: nnx.Rngs) -> None:
        if d % heads:
            raise ValueError(f"d_model ({d}) must be divisible by n_heads ({heads})")
        self.heads = heads
        self.q = nnx.Linear(d, d, rngs=rngs)
        self.kv = nnx.Linear(d, 2 * d, rngs=rngs)
        self.out = nnx.Linear(d, d, rngs=rngs)

    def __call__(self, q_in: jax.Array, kv_in: jax.Array) -> jax.Array:
        b, t, d = kv_in.shape
        dh = d // self.heads
        q = self.q(q_in).reshape(b, -1, self.heads, dh)
        k, v = jnp.split(self.kv(kv_in).reshape(b, t, self.heads, 2 * dh), 2, axis=-1)
        w = jax.nn.softmax(jnp.einsum("bqhd,bthd->bhqt", q, k) / jnp.sqrt(dh).astype(q.dtype), axis=-1)
        o = jnp.einsum("bhqt,bthd->bqhd", w, v).reshape(b, -1, d)
        return self.out(o)  # type: ignore[no-any-return]


class _Block(nnx.Module):
    """Pre-LN attention + MLP; ``readout=True`` computes the newest token only."""

    def __init__(self, d: int, heads: int, mlp_ratio: int, rngs: nnx.Rngs) -> None:
        self.ln1 = nnx.LayerNorm(d, rngs=rngs)
        self.attn = _Attention(d, heads, rngs)
        self.ln2 = nnx.LayerNorm(d, rngs=rngs)
        self.mlp1 = nnx.Linear(d, mlp_ratio * d, rngs=rngs)
        self.mlp2 = nnx.Linear(mlp_ratio * d, d, rngs=rngs)

    def __call__(self, h: jax.Array, readout: bool = False) -> jax.Array:
        n = self.ln1(h)
        q_in, h = (n[:, -1:], h[:, -1:]) if readout else (n, h)
        h = h + self.attn(q_in, n)
        return h + self.mlp2(jax.nn.gelu(self.mlp1(self.ln2(h))))  # type: ignore[no-any-return]


class VolAttention(nnx.Module):
    """Attention over a window of bar rows with a HAR-X base; see the module docstring.

    Parameters
    ----------
    n_channels : int
        Row channels (C).
    window : int
        Rows per window (T).
    n_horizons : int
        Forecast horizons (H).
    base_channels : tuple of int
        Channels of the newest row that the linear HAR-X base reads (the lags).
    config : ModelConfig
    rngs : nnx.Rngs
    """

    def __init__(
        self,
        n_channels: int,
        window: int,
        n_horizons: int,
        base_channels: tuple[int, ...],
        config: ModelConfig = ModelConfig(),
        *,
        rngs: nnx.Rngs,
    ) -> None:
        d = config.d_model
        self.base_channels = tuple(base_channels)
        self.n_horizons = n_horizons
        self.embed_x = nnx.Linear(n_channels, d, rngs=rngs)
        self.embed_m = nnx.Linear(n_channels, d, use_bias=False, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (window, d)))
        self.blocks = nnx.List([_Block(d, config.n_heads, config.mlp_ratio, rngs) for _ in range(config.n_layers)])
        self.readout = _Block(d, config.n_heads, config.mlp_ratio, rngs)
        self.ln = nnx.LayerNorm(d, rngs=rngs)
        self.hidden = nnx.Linear(d, config.head_hidden, rngs=rngs)
        zeros = nnx.initializers.zeros_init()
        self.heads = nnx.Dict(
            {
                "rv_loc": nnx.Linear(config.head_hidden, n_horizons, kernel_init=zeros, rngs=rngs),
                "rv_mean": nnx.Linear(config.head_hidden, n_horizons, kernel_init=zeros, rngs=rngs),
                "rv_quantiles": nnx.Linear(config.head_hidden, 3 * n_horizons, kernel_init=zeros, rngs=rngs),
            }
        )
        # The HAR-X base and the quantile offsets around it (set from OLS before training).
        self.base = nnx.Linear(len(self.base_channels), n_horizons, kernel_init=zeros, rngs=rngs)
        self.smearing = nnx.Param(jnp.zeros(n_horizons))  # ln E[exp(e)] of the base's log residuals
        self.q50_offset = nnx.Param(jnp.zeros(n_horizons))
        self.q_spread = nnx.Param(jnp.stack([_softplus_inv(jnp.ones(n_horizons))] * 2, axis=-1))  # [H, 2]

    def __call__(self, x: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
        """Heads for ``x[B, T, C]`` (standardized, 0 where absent) and ``mask[B, T, C]`` (0/1)."""
        h = self.embed_x(x) + self.embed_m(mask) + self.pos[...]
        for block in self.blocks:
            h = block(h)
        z = self.ln(self.readout(h, readout=True)[:, 0])
        z = jax.nn.gelu(self.hidden(z))
        base = self.base(x[:, -1, jnp.array(self.base_channels)])  # [B, H]
        loc = base + self.heads["rv_loc"](z)
        mean = jax.lax.stop_gradient(loc) + self.smearing[...] + self.heads["rv_mean"](jax.lax.stop_gradient(z))
        dq = self.heads["rv_quantiles"](z).reshape(-1, self.n_horizons, 3)
        q50 = loc + self.q50_offset[...] + dq[..., 0]
        spread = jax.nn.softplus(self.q_spread[...] + dq[..., 1:])  # [B, H, 2]
        quantiles = jnp.stack([q50 - spread[..., 0], q50, q50 + spread[..., 1]], axis=-1)
        return {"rv_loc": loc, "rv_mean": mean, "rv_quantiles": quantiles}
