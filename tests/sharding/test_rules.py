import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lnemo.sharding import DEFAULT_RULES, constrain, fit_spec, logical_to_spec, make_mesh


def test_logical_to_spec_by_hand():
    assert logical_to_spec(("batch", "sequence", "embed")) == P(("data", "fsdp"), None, None)  # fsdp used once
    assert logical_to_spec(("embed", "mlp")) == P("fsdp", "tensor")
    assert logical_to_spec(("heads", "kv_heads")) == P("tensor", None)
    assert logical_to_spec((None, "unknown", "norm")) == P(None, None, None)


def test_fit_spec_drops_absent_unit_and_non_dividing_axes():
    mesh_shape = {"data": 2, "fsdp": 4, "tensor": 1}
    assert fit_spec(P(("data", "fsdp"), "tensor"), (16, 8), mesh_shape) == P(("data", "fsdp"), None)
    assert fit_spec(P(("data", "fsdp")), (6,), mesh_shape) == P("data")
    assert fit_spec(P("fsdp", "pipeline"), (3, 8), mesh_shape) == P(None, None)
    assert fit_spec(P("data"), (4, 5, 6), mesh_shape) == P("data", None, None)


def test_constrain_is_identity_without_mesh():
    x = jnp.arange(16.0).reshape(4, 4)
    assert constrain(x, ("batch", "embed")) is x


def test_constrain_shards_inside_jit_under_a_mesh():
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    f = jax.jit(lambda x: constrain(x * 2, ("batch", "mlp"), DEFAULT_RULES))
    with jax.set_mesh(mesh):
        y = f(jnp.ones((8, 6)))
        z = jax.jit(lambda x: constrain(x, ("batch", "mlp")))(jnp.ones((8, 3)))  # 3 does not divide tensor=2
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P(("data", "fsdp"), "tensor")), 2)
    assert z.sharding.is_equivalent_to(NamedSharding(mesh, P(("data", "fsdp"), None)), 2)
    np.testing.assert_array_equal(y, 2.0)
