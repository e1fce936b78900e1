"""Meshes, logical-axis rules and shardings."""

from lnemo.sharding.rules import DEFAULT_RULES, LogicalAxes, Rules, constrain, fit_spec, logical_to_spec

__all__ = ["DEFAULT_RULES", "LogicalAxes", "Rules", "constrain", "fit_spec", "logical_to_spec"]
