"""Readers for users' data: SVMLight learning-to-rank files and the Open Bandit Dataset sample shipped inside an
installed ``obp`` package (nothing is downloaded).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from lnemo.ope.synthetic import LTRData


def read_svmlight(source: str | Path | Iterable[str], *, num_features: int | None = None) -> tuple[LTRData, np.ndarray]:
    """Reads an SVMLight / LETOR ranking file: lines ``<grade> qid:<id> <fid>:<value> ... [# comment]``.

    Feature ids are 1-based and sparse (missing = 0); consecutive rows sharing a qid form one candidate set, queries
    keep their order of first appearance.

    Args:
      source: a path, or an iterable of lines.
      num_features: F (default: the largest feature id).

    Returns:
      ``(LTRData, qids)``: padded ``[Q, N_max, F]`` float32 features, int32 labels, mask; ``qids [Q]`` as strings.

    Example:
      >>> data, qids = read_svmlight(["2 qid:7 1:0.5 3:1.0", "0 qid:7 2:1.0 # doc b"])
      >>> data.features_CxNxF.shape, qids.tolist()
      ((1, 2, 3), ['7'])
    """
    lines = Path(source).read_text().splitlines() if isinstance(source, (str, Path)) else source
    rows: dict[str, list[tuple[int, dict[int, float]]]] = {}
    max_fid = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2 or not parts[1].startswith("qid:"):
            raise ValueError(f"line {lineno}: expected '<grade> qid:<id> ...', got {raw!r}")
        try:
            grade = int(float(parts[0]))
            feats = {int(f): float(v) for f, v in (p.split(":", 1) for p in parts[2:])}
        except ValueError as err:
            raise ValueError(f"line {lineno}: cannot parse {raw!r} ({err})") from err
        if feats and min(feats) < 1:
            raise ValueError(f"line {lineno}: feature ids are 1-based, got {min(feats)}")
        max_fid = max([max_fid, *feats])
        rows.setdefault(parts[1][4:], []).append((grade, feats))
    if not rows:
        raise ValueError("source holds no SVMLight rows")
    f = max_fid if num_features is None else num_features
    if max_fid > f:
        raise ValueError(f"feature id {max_fid} exceeds num_features={f}")
    n_max = max(len(r) for r in rows.values())
    features = np.zeros((len(rows), n_max, f), np.float32)
    labels = np.zeros((len(rows), n_max), np.int32)
    where = np.zeros((len(rows), n_max), bool)
    for q, docs in enumerate(rows.values()):
        for d, (grade, feats) in enumerate(docs):
            labels[q, d], where[q, d] = grade, True
            for fid, value in feats.items():
                features[q, d, fid - 1] = value
    return LTRData(features, labels, where), np.array(list(rows))


class OBDLog(NamedTuple):
    """Open Bandit Dataset rows: one row per (impression, slot) event with its logging propensity.

    Attributes:
      item_R: item index (0..num_items-1).
      position_R: 0-based slot (0..2).
      click_R: click.
      propensity_R: the logging ranker's item-position propensity rho_0(item, position).
      user_features_RxU: hashed user features, integer-coded per column.
      num_items: number of items of the campaign.
    """

    item_R: np.ndarray
    position_R: np.ndarray
    click_R: np.ndarray
    propensity_R: np.ndarray
    user_features_RxU: np.ndarray
    num_items: int


def _obd_root() -> Path:
    spec = importlib.util.find_spec("obp")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("load_obd_sample needs the optional package 'obp' (Open Bandit Pipeline), which ships the "
                          "OBD sample; install it (e.g. `pip install --no-deps obp`) or pass root= to a folder "
                          "holding {random,bts}/{all,men,women}/*.csv")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset" / "obd"


def load_obd_sample(*, policy: str = "random", campaign: str = "all", root: str | Path | None = None) -> OBDLog:
    """Loads the Open Bandit Dataset sample (10,000 rows per policy and campaign) from an installed ``obp``.

    Each row is a single (item, slot) event, so IP-IPS treats rows as one-slot sessions:
    ``ip_ips(click[:, None], rho_e[item, position][:, None], propensity[:, None])`` estimates the click rate per
    shown slot (multiply by 3 for clicks per impression).

    Args:
      policy: "random" or "bts" (the logging policy).
      campaign: "all", "men" or "women".
      root: folder holding ``{policy}/{campaign}/{campaign}.csv``; default: inside the installed ``obp`` package.

    Returns:
      ``OBDLog``.

    Example:
      >>> log = load_obd_sample(policy="random", campaign="men")  # doctest: +SKIP

    References:
      Saito et al., *Open Bandit Dataset and Pipeline*, NeurIPS 2021 Datasets track (arXiv 2008.07146).
    """
    if policy not in ("random", "bts"):
        raise ValueError(f"policy must be 'random' or 'bts', got {policy!r}")
    if campaign not in ("all", "men", "women"):
        raise ValueError(f"campaign must be 'all', 'men' or 'women', got {campaign!r}")
    base = Path(root) if root is not None else _obd_root()
    path = base / policy / campaign / f"{campaign}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"OBD file not found: {path}")
    with path.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    if not table:
        raise ValueError(f"OBD file {path} has no rows")
    user_cols = sorted(c for c in table[0] if c.startswith("user_feature_"))
    user = np.stack([np.unique([r[c] for r in table], return_inverse=True)[1] for c in user_cols], axis=1) \
        if user_cols else np.zeros((len(table), 0), np.int64)
    item = np.array([int(r["item_id"]) for r in table], np.int32)
    item_context = base / policy / campaign / "item_context.csv"
    num_items = sum(1 for _ in item_context.open()) - 1 if item_context.is_file() else int(item.max()) + 1
    return OBDLog(
        item_R=item,
        position_R=np.array([int(r["position"]) - 1 for r in table], np.int32),
        click_R=np.array([float(r["click"]) for r in table], np.float32),
        propensity_R=np.array([float(r["propensity_score"]) for r in table], np.float64),
        user_features_RxU=user.astype(np.int32),
        num_items=num_items,
    )
