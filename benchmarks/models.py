"""Model benchmarks: forward MFU of the ``small`` preset and child-over-parent speed-ups vs the cost model.

Usage: ``python benchmarks/models.py`` -> ``benchmarks/results/models.json``.

* ``forward_mfu``: forward FLOP/s (cost-model FLOPs, batch 8 x 512) over the float32 matmul ceiling measured
  in the same process just before.
* ``child_over_parent_prefill_speedup_measured`` / ``_predicted`` and ``decode_step_speedup_measured`` /
  ``_predicted``: the quickstart's child vs the ``small`` parent; predictions from the roofline of
  ``lnemo.models.speed`` with the ceilings measured in this process.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
from _common import emit  # noqa: E402
from quickstart import child_of  # noqa: E402

from lnemo import perf  # noqa: E402
from lnemo.models import ModelConfig, cost, forward, init  # noqa: E402
from lnemo.models.speed import measure_phase_times, predict_phase_times  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    parent = ModelConfig.small()
    child = child_of(parent)
    p_params, c_params = init(parent, jax.random.key(0)), init(child, jax.random.key(1))

    tokens = jax.random.randint(jax.random.key(2), (args.batch, args.seq_len), 0, parent.vocab_size)
    fwd = jax.jit(lambda p, t: forward(parent, p, t).logits)
    peak = perf.matmul_ceiling(repeats=args.repeats)
    seconds = perf.time_fn(fwd, p_params, tokens, repeats=args.repeats)
    flops = args.batch * args.seq_len * cost.prefill_flops_per_token(parent, args.seq_len)
    figures: dict[str, float] = {"forward_mfu": flops / seconds / peak}

    bandwidth = perf.memory_bandwidth(repeats=args.repeats)
    peak = perf.matmul_ceiling(repeats=args.repeats)
    shape = dict(batch=args.batch, seq_len=args.seq_len)
    mp = measure_phase_times(parent, p_params, repeats=args.repeats, **shape)
    mc = measure_phase_times(child, c_params, repeats=args.repeats, **shape)
    pp = predict_phase_times(parent, peak_flops=peak, bandwidth=bandwidth, **shape)
    pc = predict_phase_times(child, peak_flops=peak, bandwidth=bandwidth, **shape)
    figures.update(
        child_over_parent_prefill_speedup_measured=mp.prefill_s / mc.prefill_s,
        child_over_parent_prefill_speedup_predicted=pp.prefill_s / pc.prefill_s,
        decode_step_speedup_measured=mp.decode_s / mc.decode_s,
        decode_step_speedup_predicted=pp.decode_s / pc.decode_s,
    )
    figures["prefill_measured_over_predicted"] = (figures["child_over_parent_prefill_speedup_measured"]
                                                  / figures["child_over_parent_prefill_speedup_predicted"])
    figures["decode_measured_over_predicted"] = (figures["decode_step_speedup_measured"]
                                                 / figures["decode_step_speedup_predicted"])
    emit("models", figures)
    return figures


if __name__ == "__main__":
    main()
