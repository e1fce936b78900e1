"""Small simulated worlds shared by the lnemo.ope tests."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import pytest

from lnemo import ope


class World(NamedTuple):
    logging_scores: jax.Array
    target_scores: jax.Array
    attractiveness: jax.Array
    where: jax.Array
    num_slots: int


def make_world(seed: int = 0, *, contexts: int = 4, items: int = 5, slots: int = 3, spread: float = 1.0) -> World:
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    logging = spread * jax.random.normal(k1, (contexts, items))
    target = spread * jax.random.normal(k2, (contexts, items))
    attract = jax.random.uniform(k3, (contexts, items), minval=0.05, maxval=0.95)
    where = jnp.ones((contexts, items), bool).at[0, -1].set(False)
    return World(logging, target, attract, where, slots)


@pytest.fixture
def world() -> World:
    return make_world()


def simulate(world: World, key, click_model, *, num_sessions: int, ranker=ope.PlackettLuce()):
    return ope.simulate_sessions(key, ranker, world.logging_scores, world.attractiveness, click_model,
                                 where_CxN=world.where, num_sessions=num_sessions, num_slots=world.num_slots)
