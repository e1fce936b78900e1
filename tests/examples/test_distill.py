import json


def test_distill_tiny_kd_objective_falls_and_held_out_kl_drops(tmp_path, load_example):
    distill = load_example("distill")
    out = tmp_path / "results.json"
    results = distill.main(["--preset", "tiny", "--parent-steps", "20", "--steps", "10", "--batch", "8",
                            "--seq-len", "64", "--variants", "lm,cos+kl", "--eval-batches", "2",
                            "--eval-problems", "4", "--no-progress", "--out", str(out)])
    assert list(results) == ["parent", "child, sliced", "lm", "cos+kl"]
    kd = results["cos+kl"]
    assert kd["train_loss_last"] < 0.7 * kd["train_loss_first"]
    assert kd["kl"] < 0.5 * results["child, sliced"]["kl"]
    assert kd["kl"] < results["lm"]["kl"]  # KD matches the parent better than LM training at the same budget
    assert json.loads(out.read_text())["results"]["cos+kl"]["kl"] == kd["kl"]
