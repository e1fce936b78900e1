"""Distillation benchmark: time of a global-KD training step over a plain LM step of the same student.

Figure (printed as one JSON object and merged by name into benchmarks/results/distill.json, beside the
chunked-KL figures of ``benchmarks/distill.py``):

- ``kd_step_over_lm_step_time``: median wall time of one jitted ``setup_distillation`` step (cosine + KL,
  Puzzle's GKD, the ``small`` parent as frozen teacher) over one jitted ``setup_model_training`` LM step
  of the same child (``examples/distill.py``'s), same batch, runs interleaved after warm-up. Beside it:
  ``predicted_flops`` = (student train FLOPs + teacher forward FLOPs) / student train FLOPs from
  ``lnemo.models.cost``, and ``predicted_xla_flops``, the same ratio of the compiled programs' own FLOP
  counts. Target: a KD step costs at most the student step plus one teacher forward, i.e. the measured
  ratio is about ``predicted_flops`` (the teacher is not differentiated).

Run: ``PYTHONPATH=. python benchmarks/distill_kd_step.py`` (defaults: batch 8 x 256 tokens).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import time

import grain
import jax
import numpy as np

from lnemo.data import ByteTokenizer, synthetic_pipeline
from lnemo.distill import kd_objective, setup_distillation
from lnemo.models import ModelConfig, cost, init
from lnemo.sharding import make_mesh
from lnemo.train import adamw, global_batch
from lnemo.train.model_setup import setup_model_training
from lnemo.train.objectives import lm_objective

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "distill.json"


def _child_of(parent: ModelConfig) -> ModelConfig:
    spec = importlib.util.spec_from_file_location("example_distill", ROOT / "examples" / "distill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.child_of(parent)


def merge(figures: list[dict], path: pathlib.Path = RESULTS) -> None:
    """Merge figures (keyed by their ``figure`` name) into the results file, keeping the other figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update({figure["figure"]: figure for figure in figures})
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def kd_step_figure(*, batch: int, seq_len: int, repeats: int) -> dict:
    parent = ModelConfig.small()
    child = _child_of(parent)
    mesh = make_mesh({"data": -1})
    optimizer = adamw(1e-4)
    parent_params = init(parent, jax.random.key(0))
    kd = setup_distillation(child, parent, parent_params, kd_objective(child, parent), optimizer, mesh,
                            jax.random.key(1))
    lm = setup_model_training(child, lm_objective(child), optimizer, mesh, jax.random.key(1))
    rows = next(iter(synthetic_pipeline(ByteTokenizer(), seq_len=seq_len, batch_size=batch,
                                        shard=grain.sharding.NoSharding())))
    data = global_batch({k: np.asarray(v) for k, v in rows.items()}, kd.batch_sharding)

    states = {"kd": kd.state, "lm": lm.state}
    steps = {"kd": kd.step, "lm": lm.step}
    times: dict[str, list[float]] = {"kd": [], "lm": []}
    for run in range(repeats + 2):  # two warm-up rounds (compilation, then caches)
        for name in ("kd", "lm"):
            start = time.perf_counter()
            states[name], metrics = steps[name](states[name], data)
            jax.block_until_ready(metrics)
            if run >= 2:
                times[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(values) for name, values in times.items()}

    xla_kd = kd.distill_step.lower(states["kd"], data, kd.teacher_params).compile().cost_analysis()["flops"]
    xla_lm = lm.step.lower(states["lm"], data).compile().cost_analysis()["flops"]
    student_train = cost.train_flops_per_token(child, seq_len)
    teacher_forward = cost.forward_flops_per_token(parent, seq_len)
    return {
        "figure": "kd_step_over_lm_step_time",
        "value": seconds["kd"] / seconds["lm"],
        "predicted_flops": (student_train + teacher_forward) / student_train,
        "predicted_xla_flops": xla_kd / xla_lm,
        "target": "<= predicted_flops (student step + one teacher forward)",
        "seconds": seconds,
        "objective": "cosine (every layer) + forward KL, Puzzle GKD",
        "student": "examples/distill.py child_of(small): FFNs halved, attention off in layers 1 and 3",
        "teacher": "small",
        "batch": batch,
        "seq_len": seq_len,
        "repeats": repeats,
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
        "method": "median wall time of the jitted steps after two warm-up rounds, runs interleaved",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    flags = parser.parse_args()
    figure = kd_step_figure(batch=flags.batch, seq_len=flags.seq_len, repeats=flags.repeats)
    print(json.dumps(figure))
    merge([figure])


if __name__ == "__main__":
    main()
