"""Self-describing checkpoints (principle 5), written with ``flax.serialization`` msgpack.

One file holds ``{"format", "meta", "params"}``: ``meta`` is JSON (the
:class:`~model.nn.spec.ModelSpec`, network size, normalization, horizons, what
data trained it and its validation scores), ``params`` the network weights as
nested float32 arrays. :func:`load_checkpoint` checks the format, the weights
against the network the meta describes, and the spec against what the caller
expects, and raises :class:`CheckpointError` naming the first problem.

>>> import tempfile, os
>>> try:
...     load_checkpoint(os.path.join(tempfile.gettempdir(), "no-such-volcast.ckpt"))
... except CheckpointError as e:
...     print(str(e).split(":")[0])
cannot read checkpoint
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import tempfile
from typing import Any

import jax
import msgspec
import numpy as np
from flax import nnx, serialization

from model.features import FeatureSpec
from model.nn.models import ModelConfig, VolAttention
from model.nn.spec import ModelSpec

FORMAT = "volcast.attention/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, malformed, or not matching what is expected."""


class Normalization(msgspec.Struct, frozen=True, kw_only=True):
    """Per-channel standardization ``(x - mean) / std``; ``trained`` False: never present in training, so ignored."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    trained: tuple[bool, ...]


class CheckpointMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a checkpoint says about itself."""

    format: str
    spec: ModelSpec
    model: dict[str, int]  # ModelConfig fields
    base_channels: tuple[int, ...]
    normalization: Normalization
    train_config: dict[str, Any]
    training_data: list[dict[str, Any]]  # one summary per source
    validation: dict[str, Any]  # scores on the held-out, embargoed tail
    seed: int
    created_utc: str
    versions: dict[str, str]
    fine_tuned_from: str = ""  # sha256 of the checkpoint this one started from, if any

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(**self.model)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded, validated checkpoint: its meta, weights (pure dict of arrays), file digest."""

    meta: CheckpointMeta
    params: dict[str, Any]
    sha256: str
    path: str = ""

    @property
    def spec(self) -> ModelSpec:
        return self.meta.spec

    def build_model(self) -> VolAttention:
        """The network with these weights (no random initialization is computed)."""
        return build_model(self.meta, self.params)


def _abstract_model(meta: CheckpointMeta) -> VolAttention:
    spec = meta.spec
    return nnx.eval_shape(  # type: ignore[no-any-return]
        lambda: VolAttention(
            len(spec.channels),
            spec.window,
            len(spec.horizons),
            meta.base_channels,
            meta.model_config,
            rngs=nnx.Rngs(0),
        )
    )


def build_model(meta: CheckpointMeta, params: dict[str, Any]) -> VolAttention:
    """Construct the network ``meta`` describes and load ``params`` into it; CheckpointError on a shape mismatch."""
    graphdef, state = nnx.split(_abstract_model(meta))
    expected = nnx.to_pure_dict(state)
    want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    try:
        got = {
            jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)
        }
    except Exception as e:
        raise CheckpointError(f"checkpoint weights are malformed: {e}") from e
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:3]
        raise CheckpointError(f"checkpoint weights do not match the network its meta describes, e.g. {diff}")
    nnx.replace_by_pure_dict(state, jax.tree.map(lambda a: np.asarray(a, dtype=np.float32), params))
    return nnx.merge(graphdef, state)


def save_checkpoint(path: str | os.PathLike[str], meta: CheckpointMeta, params: dict[str, Any]) -> str:
    """Write atomically (temp file + rename, so a watcher never sees half a file); return the sha256."""
    build_model(meta, params)  # refuse to write what could not be loaded
    blob = serialization.msgpack_serialize(
        {
            "format": FORMAT,
            "meta": msgspec.json.encode(meta).decode(),
            "params": jax.tree.map(lambda a: np.asarray(a, dtype=np.float32), params),
        }
    )
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ckpt-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)  # mkstemp makes it private; a checkpoint is a shared artifact
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return hashlib.sha256(blob).hexdigest()


def load_checkpoint(
    path: str | os.PathLike[str], expected_spec: ModelSpec | FeatureSpec | None = None
) -> Checkpoint:
    """Read and validate a checkpoint.

    Parameters
    ----------
    path : str
    expected_spec : ModelSpec, FeatureSpec or None
        A ``ModelSpec``: the checkpoint's must match it (bar length, window,
        horizons, lags, channels). A ``FeatureSpec``: the flow's feature rows;
        the checkpoint must be able to build its bars from them. None: no check.

    Raises
    ------
    CheckpointError
        Unreadable file, unknown format, weights that do not fit the described
        network, or a spec mismatch (the message names the field and both values).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint: {path}: {e.strerror or e}") from e
    try:
        raw = serialization.msgpack_restore(blob)
    except Exception as e:
        raise CheckpointError(f"{path} is not a volcast checkpoint (not msgpack: {type(e).__name__})") from e
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{path} has format {found!r}, expected {FORMAT!r}")
    try:
        meta = msgspec.json.decode(raw["meta"], type=CheckpointMeta)
    except (msgspec.ValidationError, msgspec.DecodeError, KeyError) as e:
        raise CheckpointError(f"{path} has unreadable meta: {e}") from e
    if isinstance(expected_spec, ModelSpec):
        try:
            meta.spec.check_compatible(expected_spec)
        except ValueError as e:
            raise CheckpointError(f"{path} does not fit this flow: {e}") from e
    elif isinstance(expected_spec, FeatureSpec):
        try:
            meta.spec.check_rows(expected_spec)
        except ValueError as e:
            raise CheckpointError(f"{path} does not fit this flow: {e}") from e
    elif expected_spec is not None:
        raise TypeError(f"expected_spec must be a ModelSpec or FeatureSpec, got {type(expected_spec).__name__}")
    params = raw.get("params")
    if not isinstance(params, dict):
        raise CheckpointError(f"{path} has no weights")
    build_model(meta, params)
    return Checkpoint(meta=meta, params=params, sha256=hashlib.sha256(blob).hexdigest(), path=path)


def versions() -> dict[str, str]:
    """Library versions recorded in a checkpoint."""
    import flax

    return {"jax": jax.__version__, "flax": flax.__version__, "numpy": np.__version__}


def utc_now() -> str:
    return dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
