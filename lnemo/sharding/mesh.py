"""Device meshes from named axis sizes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
from jax.sharding import AxisType, Mesh


def make_mesh(axes: Mapping[str, int], *, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Build a GSPMD device mesh from named axis sizes, one of which may be ``-1`` ("the rest").

    The product of the sizes must equal the number of devices; a single ``-1`` entry takes
    ``len(devices) // prod(other sizes)``. Every axis gets ``AxisType.Auto`` (pjit semantics:
    the compiler propagates shardings between the annotated inputs and outputs).

    Args:
      axes: ordered ``{axis name: size}``, e.g. ``{"data": -1, "fsdp": 1, "tensor": 1}``.
      devices: the devices to lay out; defaults to ``jax.devices()``, i.e. every device of
        every process.

    Returns:
      A ``Mesh`` with ``axis_names == tuple(axes)``.

    Example:
      >>> mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1})  # data parallel on all devices
    """
    devices = list(jax.devices() if devices is None else devices)
    if not axes:
        raise ValueError("make_mesh: axes is empty; name at least one mesh axis, e.g. {'data': -1}")
    for name, size in axes.items():
        if not isinstance(size, int) or (size < 1 and size != -1):
            raise ValueError(f"make_mesh: axis {name!r} has size {size!r}; sizes are positive ints or -1")
    rest = [name for name, size in axes.items() if size == -1]
    if len(rest) > 1:
        raise ValueError(f"make_mesh: axes {rest} are all -1; at most one axis may take 'the rest'")
    fixed = math.prod(size for size in axes.values() if size != -1)
    sizes = dict(axes)
    if rest:
        if len(devices) % fixed:
            raise ValueError(
                f"make_mesh: {len(devices)} devices are not divisible by the fixed axis sizes "
                f"{ {k: v for k, v in axes.items() if v != -1} } (product {fixed})"
            )
        sizes[rest[0]] = len(devices) // fixed
    if math.prod(sizes.values()) != len(devices):
        raise ValueError(
            f"make_mesh: axis sizes {dict(axes)} multiply to {math.prod(sizes.values())} "
            f"but there are {len(devices)} devices"
        )
    return jax.make_mesh(
        tuple(sizes.values()), tuple(sizes), axis_types=(AxisType.Auto,) * len(sizes), devices=devices
    )


def parse_mesh_axes(text: str) -> dict[str, int]:
    """Parse ``"data=-1,fsdp=2,tensor=1"`` (a command-line flag) into ``make_mesh``'s ordered axes dict.

    Example:
      >>> parse_mesh_axes("data=-1,tensor=2")
      {'data': -1, 'tensor': 2}
    """
    axes: dict[str, int] = {}
    for part in text.split(","):
        name, _, size = part.partition("=")
        name = name.strip()
        if not name or not size.strip().lstrip("-").isdigit():
            raise ValueError(f"mesh axes {text!r}: entry {part!r} must look like name=size")
        if name in axes:
            raise ValueError(f"mesh axes {text!r}: axis {name!r} appears twice")
        axes[name] = int(size)
    return axes
