"""Distillation benchmarks: memory and time of the chunked KL against the unchunked one.

Figures (each printed as one JSON object and merged into benchmarks/results/distill.json by name, so
other figures of this file's results survive a rerun):

- ``chunked_kl_peak_memory_ratio``: peak memory of ``value_and_grad`` of the forward KL computed chunk by
  chunk from hidden states (``chunked_distill_from_hidden``) over the same loss computed from materialised
  ``tokens x V`` logits. Peak = arguments + outputs + XLA temporaries of the compiled program
  (``compiled.memory_analysis()``), i.e. everything the step must hold at once. Target <= 0.25.
- ``chunked_kl_time_ratio``: wall time of the same two programs, median of several interleaved runs after warm-up,
  measured in the same process. Target <= 1.2.

Run: ``PYTHONPATH=. python benchmarks/distill.py`` (defaults: vocab 128256, 2048 tokens).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lnemo.losses import chunked_distill_from_hidden, forward_kl
from lnemo.utils import masked_mean

RESULTS = pathlib.Path(__file__).parent / "results" / "distill.json"


def merge_results(figures: list[dict], path: pathlib.Path = RESULTS) -> None:
    """Merge figures (keyed by their ``figure`` name) into the results file, keeping other keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update({figure["figure"]: figure for figure in figures})
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def _median_seconds(programs: dict, args: tuple, repeats: int) -> dict[str, float]:
    """Median wall time of each program; runs are interleaved so that load changes hit both alike."""
    for program in programs.values():
        jax.block_until_ready(program(*args))  # warm-up
    times = {name: [] for name in programs}
    for _ in range(repeats):
        for name, program in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(program(*args))
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def chunked_kl_figures(*, vocab: int, tokens: int, width: int, chunk: int, repeats: int) -> list[dict]:
    """Peak-memory and time ratios of chunked vs unchunked forward-KL value-and-grad."""
    rng = np.random.default_rng(0)
    student_hidden, teacher_hidden = (
        jnp.asarray(rng.standard_normal((1, tokens, width)), jnp.float32) for _ in range(2)
    )
    student_kernel, teacher_kernel = (
        jnp.asarray(rng.standard_normal((width, vocab)) / np.sqrt(width), jnp.float32) for _ in range(2)
    )
    where = jnp.asarray(rng.random((1, tokens)) < 0.9)

    def unchunked(hs, ws, ht, wt, where):
        return masked_mean(forward_kl(hs @ ws, ht @ wt, where=where), where=where)

    def chunked(hs, ws, ht, wt, where):
        kl = chunked_distill_from_hidden(hs, ws, ht, wt, where=where, chunk_size=chunk)
        return masked_mean(kl, where=where)

    args = (student_hidden, student_kernel, teacher_hidden, teacher_kernel, where)
    compiled, memory = {}, {}
    for name, loss in (("unchunked", unchunked), ("chunked", chunked)):
        compiled[name] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(*args).compile()
        analysis = compiled[name].memory_analysis()
        memory[name] = {
            "temp_bytes": int(analysis.temp_size_in_bytes),
            "peak_bytes": int(
                analysis.argument_size_in_bytes
                + analysis.output_size_in_bytes
                + analysis.temp_size_in_bytes
                - analysis.alias_size_in_bytes
            ),
        }
    (value_u, _), (value_c, _) = compiled["unchunked"](*args), compiled["chunked"](*args)
    seconds = _median_seconds(compiled, args, repeats)
    setting = {
        "vocab": vocab,
        "tokens": tokens,
        "width": width,
        "chunk_size": chunk,
        "repeats": repeats,
        "backend": jax.default_backend(),
    }
    return [
        {
            "figure": "chunked_kl_peak_memory_ratio",
            "value": memory["chunked"]["peak_bytes"] / memory["unchunked"]["peak_bytes"],
            "target": "<= 0.25",
            "temp_ratio": memory["chunked"]["temp_bytes"] / memory["unchunked"]["temp_bytes"],
            "bytes": memory,
            "method": "compiled.memory_analysis(): arguments + outputs + temporaries - aliases, of jit(value_and_grad)",
            **setting,
        },
        {
            "figure": "chunked_kl_time_ratio",
            "value": seconds["chunked"] / seconds["unchunked"],
            "target": "<= 1.2",
            "loss_abs_diff": float(abs(value_c - value_u)),
            "seconds": seconds,
            "method": "median wall time of the compiled value_and_grad after one warm-up, runs interleaved",
            **setting,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--width", type=int, default=256, help="hidden width D of student and teacher")
    parser.add_argument("--chunk", type=int, default=128, help="sequence positions per chunk")
    parser.add_argument("--repeats", type=int, default=3)
    flags = parser.parse_args()
    figures = chunked_kl_figures(
        vocab=flags.vocab, tokens=flags.tokens, width=flags.width, chunk=flags.chunk, repeats=flags.repeats
    )
    for figure in figures:
        print(json.dumps(figure))
    merge_results(figures)


if __name__ == "__main__":
    main()
