import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offline_ranker_eval_tiny(tmp_path, capsys):
    example = load_example("offline_ranker_eval")
    results = example.main(["--tiny", "--experiments", "divergence,kendall", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "RMSE vs divergence" in out and "Kendall tau" in out
    oracle, one_hot = (results["divergence"]["rmse"][example.SOURCES.index(s)] for s in ("oracle", "one-hot"))
    # Treating logged lists as certain is badly biased; the true propensities are not.
    assert min(one_hot) > 3 * max(oracle)
    assert (tmp_path / "rmse_vs_divergence.png").stat().st_size > 0
    assert (tmp_path / "kendall_tau.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["sources"] == list(example.SOURCES)


def test_offline_ranker_eval_rejects_unknown_experiment():
    with pytest.raises(SystemExit):
        load_example("offline_ranker_eval").main(["--experiments", "nope"])
