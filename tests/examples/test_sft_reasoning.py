import json

import pytest


@pytest.mark.slow
def test_sft_reasoning_tiny_loss_falls_and_reports_both_modes(tmp_path, load_example):
    example = load_example("sft_reasoning")
    out = example.main(["--preset", "tiny", "--pretrain-steps", "4", "--reasoning-steps", "6", "--mixed-steps", "14",
                        "--lr", "3e-3", "--batch", "8", "--seq-len", "128", "--eval-problems", "4",
                        "--eval-samples", "2", "--max-new-tokens", "24", "--out", str(tmp_path / "report.json")])
    assert out["train"]["loss"] < 0.75 * out["train_first_loss"]
    assert out["train"]["loss_off"] < out["train_first_loss"]
    for mode in ("on", "off"):
        report = out[mode]
        assert 0 <= report["pass_at_1"] <= 1 and 0 <= report["format_rate"] <= 1
        assert 1 <= report["mean_length"] <= 24
        assert set(report["by_difficulty"]) <= {2, 3}
    assert out["margin"] == out["on"]["pass_at_1"] - out["off"]["pass_at_1"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert "params" not in saved and saved["on"]["mean_length"] == out["on"]["mean_length"]
