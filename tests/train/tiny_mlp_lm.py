"""A tiny pure-jax language model and a deterministic, checkpointable data iterator for engine tests.

Params are nested dicts named with the logical axes of ``lnemo.sharding.rules``; the loss follows
the ``make_train_step`` contract: the SUM of token losses and ``aux["tokens"]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

VOCAB, EMBED, MLP, LAYERS = 32, 16, 32, 2


def init(key, *, vocab=VOCAB, embed=EMBED, mlp=MLP, layers=LAYERS):
    keys = jax.random.split(key, 2 * layers + 2)
    params = {
        "embed": jax.random.normal(keys[0], (vocab, embed)) * 0.5,
        "final_norm": jnp.ones((embed,)),
        "unembed": jax.random.normal(keys[1], (embed, vocab)) / np.sqrt(embed),
        "layers": {},
    }
    for i in range(layers):
        params["layers"][str(i)] = {
            "norm": jnp.ones((embed,)),
            "w_in": jax.random.normal(keys[2 + 2 * i], (embed, mlp)) / np.sqrt(embed),
            "b_in": jnp.zeros((mlp,)),
            "w_out": jax.random.normal(keys[3 + 2 * i], (mlp, embed)) / np.sqrt(mlp),
        }
    return params


def logical_axes(params):
    layer = {"norm": ("norm",), "w_in": ("embed", "mlp"), "b_in": ("mlp",), "w_out": ("mlp", "embed")}
    return {
        "embed": ("vocab", "embed"),
        "final_norm": ("norm",),
        "unembed": ("embed", "vocab"),
        "layers": {name: dict(layer) for name in params["layers"]},
    }


def _rms_norm(x, scale):
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6) * scale


def logits(params, tokens_BxT):
    x_BxTxD = params["embed"][tokens_BxT]
    for layer in params["layers"].values():
        h = _rms_norm(x_BxTxD, layer["norm"])
        x_BxTxD = x_BxTxD + jax.nn.gelu(h @ layer["w_in"] + layer["b_in"]) @ layer["w_out"]
    return _rms_norm(x_BxTxD, params["final_norm"]) @ params["unembed"]


def loss_fn(params, batch, rng):
    """Next-token cross-entropy summed over unmasked targets; ``rng`` is unused."""
    del rng
    tokens_BxT, where_BxT = batch["tokens"], batch["mask"]
    logits_BxTxV = logits(params, tokens_BxT[:, :-1]).astype(jnp.float32)
    logp_BxTxV = jax.nn.log_softmax(logits_BxTxV, axis=-1)
    nll_BxT = -jnp.take_along_axis(logp_BxTxV, tokens_BxT[:, 1:, None], axis=-1)[..., 0]
    where_BxT = where_BxT[:, 1:]
    loss_sum = jnp.sum(jnp.where(where_BxT, nll_BxT, 0.0))
    return loss_sum, {"tokens": jnp.sum(where_BxT).astype(jnp.int32)}


class MarkovData:
    """Batches of a fixed random Markov chain; batch ``i`` depends only on ``(seed, i)``.

    Rows have random right padding (``mask`` False) so token counts differ per row.
    ``get_state``/``set_state`` make it resumable like a grain iterator.
    """

    def __init__(self, *, batch=8, seq=9, seed=0, vocab=VOCAB):
        self.batch, self.seq, self.seed, self.vocab, self.index = batch, seq, seed, vocab, 0
        rng = np.random.default_rng(1234)
        self.next_token = rng.integers(0, vocab, size=(vocab, 2))

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng([self.seed, self.index])
        self.index += 1
        tokens = np.zeros((self.batch, self.seq), np.int32)
        tokens[:, 0] = rng.integers(0, self.vocab, size=self.batch)
        for t in range(1, self.seq):
            choice = rng.integers(0, 2, size=self.batch)
            tokens[:, t] = self.next_token[tokens[:, t - 1], choice]
        lengths = rng.integers(self.seq // 2, self.seq + 1, size=self.batch)
        mask = np.arange(self.seq)[None, :] < lengths[:, None]
        return {"tokens": tokens, "mask": mask}

    def take(self, n):
        return [next(self) for _ in range(n)]

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = int(state["index"])
