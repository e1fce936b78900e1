"""Offline ranker evaluation benchmarks (lnemo.ope).

Figures (each printed as one JSON object and merged into benchmarks/results/ope.json by name):

- ``ip_ips_seconds_1m_x10``: seconds of jitted item-position IPS (weights, value, standard error) over 1,000,000
  sessions x 10 slots, after compilation, median of several runs; ``ratio_vs_numpy`` is the same computation in
  NumPy in the same process. Target <= 0.2 s.
- ``speedup_vs_obp``: Open Bandit Pipeline 0.5.7's ``SlateIndependentIPS``, ``SlateStandardIPS`` and
  ``SlateRewardInteractionIPS`` on the same logs (long format) over lnemo's ``ip_ips`` + ``sips`` + ``rips``
  (which also return standard errors). OBP runs in its own environment (``--obp-python``, default
  ``/tmp/obp-venv/bin/python``; install with ``pip install --no-deps --ignore-requires-python obp==0.5.7`` plus
  numpy, scipy, scikit-learn, torch, tqdm, matplotlib, seaborn, pyyaml and ``pandas<3``) through a subprocess; the
  figure says "unavailable" with the reason when that environment cannot import obp. Values are checked for parity.
  Target >= 20x.
- ``pl_marginals_ms_per_query_50x10``: quadrature marginals (128 nodes, float32), 50 candidates, 10 slots,
  milliseconds per query in a batch of 1000; ``ratio_vs_mc_1e4`` against Monte Carlo with 10^4 samples. Target <= 1.
- ``marginals_max_abs_err_vs_enumeration``: float64 quadrature vs exact enumeration, N in 5..8, K in 3..5, score sd
  0.3 / 1 / 3. Target <= 1e-6.
- ``ci95_coverage``: share of 95 % normal intervals of IP-IPS (true propensities, PBM clicks) covering the exact
  value over independent logs. Target 0.93-0.97.

Run: ``PYTHONPATH=. python benchmarks/ope.py`` (``--sessions`` to shrink the 1M setting).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from lnemo import ope

RESULTS = pathlib.Path(__file__).parent / "results" / "ope.json"


def merge_results(figures: list[dict], path: pathlib.Path = RESULTS) -> None:
    """Merge figures (keyed by their ``figure`` name) into the results file, keeping other keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update({figure["figure"]: figure for figure in figures})
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def emit(figure: dict) -> dict:
    print(json.dumps(figure), flush=True)
    return figure


def median_seconds(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # warm-up / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_logs(sessions: int, slots: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic logs with valid propensities: item-position marginals and prefix probabilities."""
    rng = np.random.default_rng(seed)
    clicks = (rng.random((sessions, slots)) < 0.1).astype(np.float32)
    logging = rng.uniform(0.05, 1.0, (sessions, slots)).astype(np.float32)
    target = rng.uniform(0.0, 1.0, (sessions, slots)).astype(np.float32)
    step_0 = rng.uniform(0.3, 1.0, (sessions, slots))
    step_e = rng.uniform(0.3, 1.0, (sessions, slots))
    return {"clicks": clicks, "logging": logging, "target": target,
            "lp_0": np.cumsum(np.log(step_0), 1).astype(np.float32),
            "lp_e": np.cumsum(np.log(step_e), 1).astype(np.float32)}


def ip_ips_figure(logs: dict, repeats: int) -> dict:
    args = tuple(jnp.asarray(logs[k]) for k in ("clicks", "target", "logging"))
    program = jax.jit(lambda c, t, l: ope.ip_ips(c, t, l)[:2])
    seconds = median_seconds(program, *args, repeats=repeats)

    def numpy_ip_ips(c, t, l):
        contrib = (c * (t / l)).sum(1)
        return contrib.mean(), contrib.std(ddof=1) / np.sqrt(contrib.size)

    np_seconds = median_seconds(numpy_ip_ips, logs["clicks"], logs["target"], logs["logging"], repeats=repeats)
    s, k = logs["clicks"].shape
    return emit({"figure": "ip_ips_seconds_1m_x10", "value": seconds, "unit": "s", "sessions": s, "slots": k,
                 "ratio_vs_numpy": seconds / np_seconds, "numpy_seconds": np_seconds, "target": "<= 0.2",
                 "backend": jax.default_backend()})


OBP_SCRIPT = textwrap.dedent("""
    import json, statistics, sys, time, warnings
    warnings.filterwarnings("ignore")
    import numpy as np
    from obp.ope import SlateIndependentIPS, SlateRewardInteractionIPS, SlateStandardIPS
    d = np.load(sys.argv[1]); repeats = int(sys.argv[2]); k = int(d["slots"])
    est = {
        "ip": lambda: SlateIndependentIPS(len_list=k).estimate_policy_value(
            slate_id=d["slate_id"], reward=d["reward"], position=d["position"],
            pscore_item_position=d["pscore_item_position"],
            evaluation_policy_pscore_item_position=d["eval_item_position"]),
        "sips": lambda: SlateStandardIPS(len_list=k).estimate_policy_value(
            slate_id=d["slate_id"], reward=d["reward"], position=d["position"], pscore=d["pscore"],
            evaluation_policy_pscore=d["eval_pscore"]),
        "rips": lambda: SlateRewardInteractionIPS(len_list=k).estimate_policy_value(
            slate_id=d["slate_id"], reward=d["reward"], position=d["position"], pscore_cascade=d["pscore_cascade"],
            evaluation_policy_pscore_cascade=d["eval_cascade"]),
    }
    out = {}
    for name, fn in est.items():
        times, values = [], []
        for _ in range(repeats):  # NumPy needs no warm-up: every run counts
            t = time.perf_counter(); values.append(fn()); times.append(time.perf_counter() - t)
        out[name] = {"value": float(values[0]), "seconds": statistics.median(times)}
    import obp
    out["version"] = obp.__version__
    print(json.dumps(out))
""")


def obp_figure(logs: dict, repeats: int, obp_repeats: int, obp_python: str) -> dict:
    s, k = logs["clicks"].shape
    base = {"figure": "speedup_vs_obp", "sessions": s, "slots": k, "target": ">= 20"}
    probe = subprocess.run([obp_python, "-c", "import obp"], capture_output=True, text=True) \
        if pathlib.Path(obp_python).exists() else None
    if probe is None or probe.returncode != 0:
        reason = f"{obp_python} not found" if probe is None else probe.stderr.strip().splitlines()[-1]
        return emit({**base, "value": None, "unavailable": f"obp not importable: {reason}"})
    lp_0, lp_e = logs["lp_0"].astype(np.float64), logs["lp_e"].astype(np.float64)
    long = {"slate_id": np.repeat(np.arange(s), k), "position": np.tile(np.arange(k), s),
            "reward": logs["clicks"].reshape(-1).astype(np.float64),
            "pscore_item_position": logs["logging"].reshape(-1).astype(np.float64),
            "eval_item_position": logs["target"].reshape(-1).astype(np.float64),
            "pscore": np.repeat(np.exp(lp_0[:, -1]), k), "eval_pscore": np.repeat(np.exp(lp_e[:, -1]), k),
            "pscore_cascade": np.exp(lp_0).reshape(-1), "eval_cascade": np.exp(lp_e).reshape(-1), "slots": k}
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "logs.npz"
        np.savez(path, **long)
        run = subprocess.run([obp_python, "-c", OBP_SCRIPT, str(path), str(obp_repeats)], capture_output=True,
                             text=True)
    if run.returncode != 0:
        return emit({**base, "value": None, "unavailable": f"obp run failed: {run.stderr.strip()[-300:]}"})
    obp = json.loads(run.stdout.strip().splitlines()[-1])
    c, t, lg, le, l0 = (jnp.asarray(logs[x]) for x in ("clicks", "target", "logging", "lp_e", "lp_0"))
    programs = {"ip": (jax.jit(lambda *a: ope.ip_ips(*a)[:2]), (c, t, lg)),
                "sips": (jax.jit(lambda *a: ope.sips(*a)[:2]), (c, le, l0)),
                "rips": (jax.jit(lambda *a: ope.rips(*a)[:2]), (c, le, l0))}
    ours = {name: median_seconds(p, *a, repeats=repeats) for name, (p, a) in programs.items()}
    values = {name: float(p(*a)[0]) for name, (p, a) in programs.items()}
    parity = {name: abs(values[name] - obp[name]["value"]) / max(abs(obp[name]["value"]), 1e-12) for name in ours}
    obp_total = sum(obp[name]["seconds"] for name in ours)
    return emit({**base, "value": obp_total / sum(ours.values()), "obp_seconds": {n: obp[n]["seconds"] for n in ours},
                 "lnemo_seconds": ours, "per_estimator_speedup": {n: obp[n]["seconds"] / ours[n] for n in ours},
                 "max_relative_value_difference": max(parity.values()), "obp_version": obp["version"]})


def marginals_speed_figure(repeats: int, queries: int = 1000) -> dict:
    scores = jax.random.normal(jax.random.key(0), (queries, 50))
    quad = jax.jit(lambda s: ope.pl_marginals_quadrature(s, num_slots=10))
    seconds = median_seconds(quad, scores, repeats=repeats)
    mc = jax.jit(lambda s: ope.pl_marginals_mc(jax.random.key(1), s, num_slots=10, num_samples=10_000))
    mc_seconds = median_seconds(mc, scores[:50], repeats=max(1, repeats // 2)) / 50
    err = float(ope.column_sum_error(quad(scores)).max())
    return emit({"figure": "pl_marginals_ms_per_query_50x10", "value": 1e3 * seconds / queries, "unit": "ms/query",
                 "num_nodes": 128, "dtype": "float32", "queries": queries,
                 "ratio_vs_mc_1e4": (seconds / queries) / mc_seconds, "max_column_sum_error": err,
                 "target": "<= 1"})


def marginals_accuracy_figure() -> dict:
    worst = 0.0
    with jax.enable_x64(True):
        for n in range(5, 9):
            for k in (3, 4, 5):
                for i, sd in enumerate((0.3, 1.0, 3.0)):
                    key = jax.random.key(100 * n + 10 * k + i)
                    scores = sd * jax.random.normal(key, (50, n), jnp.float64)
                    where = jnp.arange(n) < jax.random.randint(key, (50, 1), 2, n + 1)
                    quad = ope.pl_marginals_quadrature(scores, where=where, num_slots=k)
                    exact = ope.pl_marginals_exact(scores, where=where, num_slots=k)
                    worst = max(worst, float(jnp.max(jnp.abs(quad - exact))))
    return emit({"figure": "marginals_max_abs_err_vs_enumeration", "value": worst, "dtype": "float64",
                 "num_nodes": 128, "tail": 1e-6, "target": "<= 1e-6"})


def coverage_figure(seeds: int, sessions: int) -> dict:
    key = jax.random.key(0)
    c, n, k = 10, 8, 4
    k1, k2, k3 = jax.random.split(key, 3)
    logging, target = jax.random.normal(k1, (c, n)), jax.random.normal(k2, (c, n))
    gamma = jax.random.uniform(k3, (c, n), minval=0.05, maxval=0.9)
    where = jnp.ones((c, n), bool)
    model = ope.PositionBased(ope.pbm_eyetrack(k))
    rho_0 = ope.pl_marginals_exact(logging, num_slots=k)
    rho_e = ope.pl_marginals_exact(target, num_slots=k)
    truth = jnp.mean(jnp.sum(rho_e * model.item_position_ctr(gamma), axis=(-2, -1)))

    def covered(seed_key):
        s = ope.simulate_sessions(seed_key, ope.PlackettLuce(), logging, gamma, model, where_CxN=where,
                                  num_sessions=sessions, num_slots=k)
        est = ope.ip_ips(s.clicks_SxK, ope.gather_logged(rho_e, s), ope.gather_logged(rho_0, s), where=s.where_SxK)
        ci = ope.normal_interval(est)
        return (ci.lower <= truth) & (truth <= ci.upper)

    hits = jax.jit(lambda keys: jax.lax.map(covered, keys, batch_size=50))(jax.random.split(key, seeds))
    rate = float(jnp.mean(hits))
    return emit({"figure": "ci95_coverage", "value": rate, "seeds": seeds, "sessions": sessions,
                 "binomial_stderr": float(np.sqrt(rate * (1 - rate) / seeds)), "target": "0.93-0.97"})


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=1_000_000)
    p.add_argument("--slots", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--obp-repeats", type=int, default=1, help="OBP's slate IPS takes minutes at 1M sessions")
    p.add_argument("--obp-python", default="/tmp/obp-venv/bin/python")
    p.add_argument("--coverage-seeds", type=int, default=2000)
    p.add_argument("--coverage-sessions", type=int, default=2000)
    args = p.parse_args(argv)
    logs = make_logs(args.sessions, args.slots)
    figures = [ip_ips_figure(logs, args.repeats), obp_figure(logs, args.repeats, args.obp_repeats, args.obp_python),
               marginals_speed_figure(args.repeats), marginals_accuracy_figure(),
               coverage_figure(args.coverage_seeds, args.coverage_sessions)]
    merge_results(figures)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
