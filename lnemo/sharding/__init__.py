"""Meshes, logical-axis rules and shardings."""

from lnemo.sharding.mesh import make_mesh, parse_mesh_axes
from lnemo.sharding.rules import DEFAULT_RULES, LogicalAxes, Rules, constrain, fit_spec, logical_to_spec
from lnemo.sharding.shardings import batch_sharding, opt_state_shardings, param_shardings, with_shardings

__all__ = [
    "DEFAULT_RULES",
    "LogicalAxes",
    "Rules",
    "batch_sharding",
    "constrain",
    "fit_spec",
    "logical_to_spec",
    "make_mesh",
    "opt_state_shardings",
    "param_shardings",
    "parse_mesh_axes",
    "with_shardings",
]
