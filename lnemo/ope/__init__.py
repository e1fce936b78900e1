"""Offline evaluation of rankers from click logs, with parametric (Plackett-Luce) logging propensities.

In the spirit of Vinay, Kilaru & Arbour, *Offline Evaluation of Ranked Lists using Parametric Estimation of
Propensities* (SIGIR 2022); the parts of that paper's method that lnemo reconstructs are marked in the guide.
Imports no flax.
"""

from lnemo.ope.click_fit import PositionBasedEM, PositionBasedState, cascade_dr_baselines
from lnemo.ope.click_models import (
    Cascade,
    DependentClick,
    PositionBased,
    TrustBias,
    UserBrowsing,
    attractiveness_binary,
    attractiveness_linear,
    attractiveness_noise,
    attractiveness_squared,
    pbm_dcg,
    pbm_eyetrack,
    pbm_power,
)
from lnemo.ope.data import Candidates, Sessions, check_sessions, from_long, gather_logged, to_long
from lnemo.ope.datasets import OBDLog, load_obd_sample, read_svmlight
from lnemo.ope.diagnostics import (
    WeightDiagnostics,
    clipping_bias_bound,
    column_sum_error,
    kish_ess,
    marginal_dispersion,
    off_support_mass,
    weight_diagnostics,
)
from lnemo.ope.estimators import (
    Estimate,
    cascade_dr,
    direct_method,
    interpol_ips,
    ip_ips,
    item_position_weights,
    naive,
    pbm_ips,
    pseudoinverse_ips,
    rips,
    sips,
    sn_ip_ips,
    sn_rips,
    sn_sips,
)
from lnemo.ope.intervals import Interval, bootstrap_interval, normal_interval, paired_difference
from lnemo.ope.marginals import (
    gumbel_top_k,
    pl_marginals_exact,
    pl_marginals_mc,
    pl_marginals_quadrature,
    pl_marginals_rb_mc,
    pl_pair_marginals_exact,
)
from lnemo.ope.pl_fit import LinearScores, MLPScores, ScoreModel, TableScores, fit_plackett_luce, pl_topk_nll
from lnemo.ope.propensities import empirical_marginals, one_hot_propensities
from lnemo.ope.rankers import Deterministic, EpsilonGreedy, PlackettLuce, Ranker, pl_slot_log_probs
from lnemo.ope.synthetic import LTRData, TrueValue, make_ltr_data, simulate_sessions, true_value, weak_ranker_weights

__all__ = [
    "Candidates", "Cascade", "DependentClick", "Deterministic", "EpsilonGreedy", "Estimate", "Interval", "LTRData",
    "LinearScores", "MLPScores", "OBDLog", "PlackettLuce", "PositionBased", "PositionBasedEM", "PositionBasedState",
    "Ranker",
    "ScoreModel", "Sessions", "TableScores", "TrueValue", "TrustBias", "UserBrowsing", "WeightDiagnostics",
    "attractiveness_binary", "attractiveness_linear", "attractiveness_noise", "attractiveness_squared",
    "bootstrap_interval", "cascade_dr", "cascade_dr_baselines", "check_sessions", "clipping_bias_bound",
    "column_sum_error", "direct_method", "empirical_marginals", "fit_plackett_luce", "from_long", "gather_logged",
    "gumbel_top_k", "interpol_ips", "ip_ips", "item_position_weights", "kish_ess", "load_obd_sample",
    "make_ltr_data", "marginal_dispersion", "naive", "normal_interval", "off_support_mass", "one_hot_propensities", "paired_difference",
    "pbm_dcg", "pbm_eyetrack", "pbm_ips", "pbm_power", "pl_marginals_exact", "pl_marginals_mc",
    "pl_marginals_quadrature", "pl_marginals_rb_mc", "pl_pair_marginals_exact", "pl_slot_log_probs", "pl_topk_nll",
    "pseudoinverse_ips", "read_svmlight", "rips", "simulate_sessions", "sips", "sn_ip_ips", "sn_rips", "sn_sips",
    "to_long", "true_value", "weak_ranker_weights", "weight_diagnostics",
]
