"""Fitting a Plackett-Luce model of the logging ranker from its logged lists (parametric propensities).

The logged order is the label of a listwise learning-to-rank problem: maximise the top-K Plackett-Luce likelihood

    log P(y | x) = sum_k [ s(y_k) - logsumexp_{j in D_x minus {y_1..y_{k-1}}} s(j) ]

over the candidate set D_x, with scores s_phi(x, a) from a score model: free per-(context, item) parameters
(``TableScores``), linear in features (``LinearScores``) or a small MLP (``MLPScores``, plain JAX). The fitted
ranker's marginals (``rankers.PlackettLuce(...).marginals``) are the parametric propensities.

**Candidate-set caveat.** The likelihood needs the candidate set D_x the logger chose from. If only the displayed
lists are logged, pass the displayed items as candidates and you fit P(order | displayed set), which cannot model
selection into the top K: the fitted marginals then put all mass on displayed items and the propensity of an item
the logger could have shown but did not is not identified.

References:
  Vinay, Kilaru & Arbour, SIGIR 2022 (parametric propensities via learning to rank; reconstructed reading);
  Xia et al., ICML 2008 (ListMLE, the full-list case).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from lnemo.ope.data import Candidates, Sessions
from lnemo.ope.rankers import pl_slot_log_probs
from lnemo.types import Array, PRNGKey, PyTree


class ScoreModel(Protocol):
    """A score model: ``init(key) -> params`` and ``apply(params, features_CxNxF) -> scores_CxN``."""

    def init(self, key: PRNGKey) -> PyTree: ...

    def apply(self, params: PyTree, features_CxNxF: Array | None) -> Array: ...


class TableScores(NamedTuple):
    """Free scores per (context, item): s(x, a) = phi[x, a]. Generalises nothing across contexts; features ignored.

    Example:
      >>> m = TableScores(2, 3); m.apply(m.init(jax.random.key(0)), None).shape
      (2, 3)
    """

    num_contexts: int
    num_items: int

    def init(self, key: PRNGKey) -> Array:
        """Zero scores ``[C, N]``."""
        return jnp.zeros((self.num_contexts, self.num_items), jnp.float32)

    def apply(self, params: Array, features_CxNxF: Array | None) -> Array:
        """The table itself."""
        return params


class LinearScores(NamedTuple):
    """Linear scores s(x, a) = w . f(x, a).

    Example:
      >>> m = LinearScores(4); m.apply(m.init(jax.random.key(0)), jnp.ones((2, 3, 4))).shape
      (2, 3)
    """

    num_features: int

    def init(self, key: PRNGKey) -> Array:
        """Zero weights ``[F]``."""
        return jnp.zeros(self.num_features, jnp.float32)

    def apply(self, params: Array, features_CxNxF: Array) -> Array:
        """``features @ w``."""
        return jnp.asarray(features_CxNxF, jnp.float32) @ params


class MLPScores(NamedTuple):
    """One-hidden-layer MLP s(x, a) = v . tanh(W f(x, a) + b), written in plain JAX.

    Example:
      >>> m = MLPScores(4, 8); m.apply(m.init(jax.random.key(0)), jnp.ones((2, 3, 4))).shape
      (2, 3)
    """

    num_features: int
    hidden: int = 32

    def init(self, key: PRNGKey) -> dict[str, Array]:
        """Glorot-normal hidden layer, zero output layer (so the fit starts from uniform PL)."""
        scale = jnp.sqrt(2.0 / (self.num_features + self.hidden))
        return {"w": scale * jax.random.normal(key, (self.num_features, self.hidden), jnp.float32),
                "b": jnp.zeros(self.hidden, jnp.float32), "v": jnp.zeros(self.hidden, jnp.float32)}

    def apply(self, params: dict[str, Array], features_CxNxF: Array) -> Array:
        """Scores ``[C, N]``."""
        h = jnp.tanh(jnp.asarray(features_CxNxF, jnp.float32) @ params["w"] + params["b"])
        return h @ params["v"]


def pl_topk_nll(scores_CxN: Array, sessions: Sessions, *, where_CxN: Array) -> Array:
    """Negative top-K Plackett-Luce log-likelihood of each logged list over its context's candidates, ``[S]``.

    Args:
      scores_CxN: scores per context.
      sessions: the log (items index the candidates).
      where_CxN: valid candidates (the candidate set D_x).

    Returns:
      ``[S]`` per-session NLL (unreduced).

    Example:
      >>> s = Sessions(jnp.array([[0, 1]]), jnp.zeros((1, 2)), jnp.array([0]))
      >>> pl_topk_nll(jnp.zeros((1, 3)), s, where_CxN=jnp.ones((1, 3), bool))  # log 3 + log 2
      Array([1.7917595], dtype=float32)
    """
    items, _, ctx = sessions
    ctx = jnp.asarray(ctx)
    return -jnp.sum(pl_slot_log_probs(scores_CxN[ctx], items, where=jnp.asarray(where_CxN)[ctx]), axis=-1)


def fit_plackett_luce(
    model: ScoreModel, params: PyTree, sessions: Sessions, candidates: Candidates, *,
    optimizer: optax.GradientTransformation, num_steps: int,
) -> tuple[PyTree, Array]:
    """Fits a PL logger by full-batch gradient descent on the mean top-K NLL (``lax.scan`` over steps).

    Args:
      model: a ``ScoreModel``.
      params: initial parameters (``model.init(key)``).
      sessions: the log.
      candidates: candidate sets (``where_CxN``, and ``features_CxNxF`` for feature models).
      optimizer: an optax transformation (inject weight decay etc. here).
      num_steps: number of steps (static).

    Returns:
      ``(params, losses)`` with losses ``[num_steps]``, the mean NLL before each step.

    Example:
      >>> s = Sessions(jnp.array([[1, 0]]), jnp.zeros((1, 2)), jnp.array([0]))
      >>> m = TableScores(1, 2)
      >>> params, losses = fit_plackett_luce(m, m.init(jax.random.key(0)), s, Candidates(jnp.ones((1, 2), bool)),
      ...                                    optimizer=optax.adam(0.1), num_steps=10)

    References:
      lnemo ``ope-methods.md`` §4 (fitting the PL logger).
    """

    def loss_fn(p: PyTree) -> Array:
        scores = model.apply(p, candidates.features_CxNxF)
        return jnp.mean(pl_topk_nll(scores, sessions, where_CxN=candidates.where_CxN))

    def step(carry: tuple[PyTree, Any], _: None) -> tuple[tuple[PyTree, Any], Array]:
        p, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=num_steps)
    return params, losses
