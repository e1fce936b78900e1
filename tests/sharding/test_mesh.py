import jax
import pytest
from jax.sharding import AxisType

from lnemo.sharding import make_mesh


@pytest.mark.parametrize(
    ("axes", "shape"),
    [
        ({"data": -1, "fsdp": 1, "tensor": 1}, (8, 1, 1)),
        ({"data": 2, "fsdp": -1, "tensor": 2}, (2, 2, 2)),
        ({"data": 1, "fsdp": 1, "tensor": -1}, (1, 1, 8)),
        ({"data": 2, "fsdp": 4, "tensor": 1}, (2, 4, 1)),
    ],
)
def test_make_mesh_shapes_and_auto_axes(axes, shape):
    mesh = make_mesh(axes)
    assert mesh.axis_names == tuple(axes)
    assert tuple(mesh.shape.values()) == shape
    assert mesh.axis_types == (AxisType.Auto,) * len(axes)
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in jax.devices())


def test_make_mesh_on_given_devices():
    mesh = make_mesh({"data": -1, "tensor": 2}, devices=jax.devices()[:4])
    assert dict(mesh.shape) == {"data": 2, "tensor": 2}
    assert {d.id for d in mesh.devices.flat} == {d.id for d in jax.devices()[:4]}


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"data": 3, "fsdp": 1, "tensor": 1}, "multiply to 3 but there are 8 devices"),
        ({"data": 4, "fsdp": 4}, "multiply to 16"),
        ({"data": -1, "tensor": 3}, "not divisible"),
        ({"data": -1, "tensor": -1}, "at most one axis"),
        ({"data": 0, "tensor": 8}, "'data' has size 0"),
        ({"data": 2.0, "tensor": 4}, "'data' has size 2.0"),
        ({}, "empty"),
    ],
)
def test_make_mesh_errors(axes, message):
    with pytest.raises(ValueError, match=message):
        make_mesh(axes)


def test_parse_mesh_axes():
    from lnemo.sharding import parse_mesh_axes

    assert parse_mesh_axes("data=-1,fsdp=2, tensor=1") == {"data": -1, "fsdp": 2, "tensor": 1}
    with pytest.raises(ValueError, match="'data' must look like name=size"):
        parse_mesh_axes("data")
    with pytest.raises(ValueError, match="axis 'data' appears twice"):
        parse_mesh_axes("data=2,data=4")
