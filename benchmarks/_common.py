"""Shared output helper of the benchmark scripts: one JSON object per figure, merged into results/<area>.json."""

from __future__ import annotations

import json
import pathlib
import platform

import jax

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def emit(area: str, figures: dict[str, object]) -> None:
    """Print each figure as a JSON line and merge all of them into ``benchmarks/results/<area>.json``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{area}.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    for name, value in figures.items():
        print(json.dumps({"area": area, "figure": name, "value": value}))
        merged[name] = value
    merged["_machine"] = {"platform": platform.platform(), "devices": [str(d) for d in jax.devices()]}
    path.write_text(json.dumps(merged, indent=2, sort_keys=True))
