"""Offline ranker evaluation harness: one-hot vs empirical vs parametric vs oracle propensities against the truth.

A synthetic learning-to-rank world (``lnemo.ope.make_ltr_data``) with clicks from a chosen click model; the logging
ranker is a weak linear model made stochastic (Plackett-Luce, or epsilon-greedy for the misspecified experiment);
target rankers interpolate from the logging scores (alpha = 0) to a strong ranker (alpha = 1). Every target's value
is estimated by item-position IPS with four propensity sources and compared with its exact value:

* ``divergence``: RMSE as the target diverges from the logger (alpha sweep);
* ``log_size``: RMSE as the log grows (alpha = 0.5);
* ``misspecified``: RMSE when the logger is epsilon-greedy but the parametric fit assumes Plackett-Luce;
* ``kendall``: Kendall tau between the estimated and the true ordering of the whole pool of target rankers.

Prints markdown tables, writes ``results.json`` and PNG plots to ``--out``. ``python examples/offline_ranker_eval.py
--help`` lists the flags; ``--tiny`` runs in seconds.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from scipy.stats import kendalltau

from lnemo import ope

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SOURCES = ("oracle", "one-hot", "empirical", "parametric")
CLICK_MODELS = {
    "pbm": lambda k: ope.PositionBased(ope.pbm_eyetrack(k)),
    "trust": lambda k: ope.TrustBias.oosterhuis_default(k),
    "cascade": lambda k: ope.Cascade(),
    "dcm": lambda k: ope.DependentClick.power(k),
    "ubm": lambda k: ope.UserBrowsing.distance_power(k),
}
EXPERIMENTS = ("divergence", "log_size", "misspecified", "kendall")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--items", type=int, default=10)
    p.add_argument("--slots", type=int, default=5)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--sessions", type=int, default=10_000, help="log size of the divergence/misspecified/kendall runs")
    p.add_argument("--log-sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--target-temperatures", type=float, nargs="+", default=[0.5, 1.0])
    p.add_argument("--epsilon", type=float, default=0.3, help="exploration of the misspecified epsilon-greedy logger")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--fit-steps", type=int, default=300)
    p.add_argument("--click-model", choices=sorted(CLICK_MODELS), default="pbm")
    p.add_argument("--experiments", default=",".join(EXPERIMENTS))
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("offline_ranker_eval_out"))
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke setting")
    args = p.parse_args(argv)
    if args.tiny:
        args.queries, args.items, args.slots, args.features = 8, 6, 3, 4
        args.sessions, args.log_sizes, args.seeds, args.fit_steps = 400, [200, 800], 2, 30
        args.alphas, args.target_temperatures = [0.0, 1.0], [1.0]
    args.experiments = args.experiments.split(",")
    unknown = set(args.experiments) - set(EXPERIMENTS)
    if unknown:
        p.error(f"unknown experiments {sorted(unknown)}; choose from {EXPERIMENTS}")
    return args


def build_world(args: argparse.Namespace) -> dict:
    """The LTR world, the logging scores (weak ranker) and the pool of target rankers' scores."""

    @jax.jit
    def make(key):
        k_data, k_weak, k_strong = jax.random.split(key, 3)
        data = ope.make_ltr_data(k_data, num_queries=args.queries, num_items=args.items,
                                 num_features=args.features, min_items=max(args.slots, args.items // 2))
        weak = ope.weak_ranker_weights(k_weak, data, feature_fraction=0.5, query_fraction=0.1)
        strong = ope.weak_ranker_weights(k_strong, data, feature_fraction=1.0, query_fraction=1.0)
        norm = lambda s: s / jnp.std(jnp.where(data.where_CxN, s, 0.0))  # noqa: E731
        return data, norm(data.features_CxNxF @ weak), norm(data.features_CxNxF @ strong)

    data, logging, good = make(jax.random.key(0))
    pool = [(a, t, (1 - a) * logging + a * good) for t in args.target_temperatures for a in args.alphas]
    return {"data": data, "gamma": ope.attractiveness_noise(data.labels_CxN), "logging": logging, "pool": pool,
            "click_model": CLICK_MODELS[args.click_model](args.slots)}


def truths(world: dict, args: argparse.Namespace) -> np.ndarray:
    """Exact value of every target ranker (Monte Carlo only for cascade-type models with many items)."""
    where = world["data"].where_CxN

    @jax.jit
    def all_truths():
        return jnp.stack([
            ope.true_value(ope.PlackettLuce(temp), scores, world["gamma"], world["click_model"], where_CxN=where,
                           num_slots=args.slots, key=jax.random.key(100 + i), num_samples=20_000).value
            for i, (_, temp, scores) in enumerate(world["pool"])])

    return np.asarray(all_truths())


def make_runner(world: dict, args: argparse.Namespace, logger, num_sessions: int):
    """A jitted ``seeds -> estimates [seeds, sources, targets]`` for one logger and log size."""
    data = world["data"]
    where = data.where_CxN
    k = args.slots
    model = ope.LinearScores(args.features)

    def one(key, rho_targets, rho_oracle):
        k_sim, k_init = jax.random.split(key)
        s = ope.simulate_sessions(k_sim, logger, world["logging"], world["gamma"], world["click_model"],
                                  where_CxN=where, num_sessions=num_sessions, num_slots=k)
        params, _ = ope.fit_plackett_luce(model, model.init(k_init), s, data.candidates,
                                          optimizer=optax.adam(0.05), num_steps=args.fit_steps)
        rho_fit = ope.PlackettLuce().marginals(model.apply(params, data.features_CxNxF), where=where, num_slots=k)
        props = [ope.gather_logged(rho_oracle, s), ope.one_hot_propensities(s),
                 ope.gather_logged(ope.empirical_marginals(s, num_contexts=args.queries, num_items=args.items), s),
                 ope.gather_logged(rho_fit, s)]
        shown = s.where_SxK
        targets = [ope.gather_logged(r, s) for r in rho_targets]
        return jnp.array([[ope.ip_ips(s.clicks_SxK, t, p, where=shown).value for t in targets] for p in props])

    @jax.jit
    def run(keys):
        rho_targets = jnp.stack([ope.PlackettLuce(t).marginals(s, where=where, num_slots=k)
                                 for _, t, s in world["pool"]])
        rho_oracle = logger.marginals(world["logging"], where=where, num_slots=k)
        return jax.vmap(one, in_axes=(0, None, None))(keys, rho_targets, rho_oracle)

    return run


def calibration(world: dict, args: argparse.Namespace, logger) -> np.ndarray:
    """Pearson dispersion per slot of the fitted PL logger against a held-out log (about 1 = calibrated)."""
    data, where, k = world["data"], world["data"].where_CxN, args.slots
    model = ope.LinearScores(args.features)

    @jax.jit
    def run(key):
        k_fit, k_held, k_init = jax.random.split(key, 3)
        logs = [ope.simulate_sessions(kk, logger, world["logging"], world["gamma"], world["click_model"],
                                      where_CxN=where, num_sessions=args.sessions, num_slots=k)
                for kk in (k_fit, k_held)]
        params, _ = ope.fit_plackett_luce(model, model.init(k_init), logs[0], data.candidates,
                                          optimizer=optax.adam(0.05), num_steps=args.fit_steps)
        fitted = ope.PlackettLuce().marginals(model.apply(params, data.features_CxNxF), where=where, num_slots=k)
        held = ope.empirical_marginals(logs[1], num_contexts=args.queries, num_items=args.items)
        counts = jnp.bincount(logs[1].context_S, length=args.queries)
        return ope.marginal_dispersion(fitted, held, counts, where=where)

    return np.asarray(run(jax.random.key(7)))


def rmse(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RMSE over seeds, ``[sources, targets]``."""
    return np.sqrt(np.mean((est - truth) ** 2, axis=0))


def table(title: str, header: list[str], rows: list[list]) -> str:
    lines = [f"\n### {title}", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"{c:.4f}" if isinstance(c, float) else str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def plot(path: pathlib.Path, x: list, curves: dict[str, np.ndarray], xlabel: str, title: str, logx: bool = False):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, y in curves.items():
        ax.plot(x, y, marker="o", label=name)
    ax.set(xlabel=xlabel, ylabel="RMSE of V-hat", title=title)
    if logx:
        ax.set_xscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    world = build_world(args)
    truth = truths(world, args)
    seeds = jax.random.split(jax.random.key(42), args.seeds)
    pl_logger = ope.PlackettLuce()
    first_temp = [i for i, (_, t, _) in enumerate(world["pool"]) if t == args.target_temperatures[0]]
    results: dict = {"truth": truth.tolist(), "sources": list(SOURCES),
                     "pool": [{"alpha": a, "temperature": t} for a, t, _ in world["pool"]]}
    base = None
    if {"divergence", "kendall"} & set(args.experiments):
        base = np.asarray(make_runner(world, args, pl_logger, args.sessions)(seeds))
    if "divergence" in args.experiments:
        err = rmse(base, truth)[:, first_temp]
        results["divergence"] = {"alphas": args.alphas, "rmse": err.tolist()}
        print(table(f"RMSE vs divergence ({args.sessions} sessions, {args.seeds} seeds, {args.click_model})",
                    ["alpha", *SOURCES], [[a, *map(float, err[:, j])] for j, a in enumerate(args.alphas)]))
        plot(args.out / "rmse_vs_divergence.png", args.alphas, dict(zip(SOURCES, err)),
             "alpha (0 = logging ranker, 1 = strong ranker)", "Error as the target diverges")
    if "log_size" in args.experiments:
        mid = first_temp[len(first_temp) // 2]
        err = np.array([rmse(np.asarray(make_runner(world, args, pl_logger, n)(seeds)), truth)[:, mid]
                        for n in args.log_sizes])
        results["log_size"] = {"sizes": args.log_sizes, "alpha": world["pool"][mid][0], "rmse": err.T.tolist()}
        print(table(f"RMSE vs log size (alpha = {world['pool'][mid][0]})", ["sessions", *SOURCES],
                    [[n, *map(float, e)] for n, e in zip(args.log_sizes, err)]))
        plot(args.out / "rmse_vs_log_size.png", args.log_sizes, dict(zip(SOURCES, err.T)), "sessions in the log",
             "Error as the log grows", logx=True)
    if "misspecified" in args.experiments:
        greedy = ope.EpsilonGreedy(args.epsilon)
        truth_same = truth  # targets do not depend on the logger
        est = np.asarray(make_runner(world, args, greedy, args.sessions)(seeds))
        err = rmse(est, truth_same)[:, first_temp]
        results["misspecified"] = {"alphas": args.alphas, "epsilon": args.epsilon, "rmse": err.tolist()}
        print(table(f"RMSE with an epsilon-greedy logger (eps = {args.epsilon}) fitted as Plackett-Luce",
                    ["alpha", *SOURCES], [[a, *map(float, err[:, j])] for j, a in enumerate(args.alphas)]))
        plot(args.out / "rmse_misspecified.png", args.alphas, dict(zip(SOURCES, err)), "alpha",
             "Misspecified logging model")
        disp = {"plackett-luce logger": calibration(world, args, pl_logger), "epsilon-greedy logger":
                calibration(world, args, greedy)}
        results["misspecified"]["dispersion"] = {name: d.tolist() for name, d in disp.items()}
        print(table("Calibration of the fitted PL logger on a held-out log (Pearson dispersion per slot, ~1 = good)",
                    ["logger", *[f"slot {i + 1}" for i in range(args.slots)]],
                    [[name, *map(float, d)] for name, d in disp.items()]))
    if "kendall" in args.experiments:
        taus = np.array([[kendalltau(base[s, i], truth).statistic for i in range(len(SOURCES))]
                         for s in range(args.seeds)])
        tau = np.nanmean(taus, axis=0)
        results["kendall"] = dict(zip(SOURCES, map(float, tau)))
        print(table(f"Kendall tau of the ordering of {len(truth)} rankers (mean over seeds)", list(SOURCES),
                    [list(map(float, tau))]))
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.bar(SOURCES, tau)
        ax.set(ylabel="Kendall tau", title="Ordering of candidate rankers", ylim=(-1, 1))
        fig.tight_layout()
        fig.savefig(args.out / "kendall_tau.png", dpi=100)
        plt.close(fig)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
