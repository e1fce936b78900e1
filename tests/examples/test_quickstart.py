import pytest


def test_quickstart_models_stage_on_tiny(capsys, load_example):
    quickstart = load_example("quickstart")
    results = quickstart.main(["--stages", "models", "--preset", "tiny", "--num-layers", "4", "--batch", "2", "--seq-len", "32"])
    out = capsys.readouterr().out
    assert "gqa(kv=2) | swiglu(128)" in out and "none | swiglu(64)" in out
    figures = results["models"]
    # the child of the tiny parent does strictly less work by construction
    assert figures["prefill_speedup_predicted"] > 1 and figures["decode_step_speedup_predicted"] > 1
    assert all(v > 0 for v in figures.values())


def test_quickstart_rejects_unknown_stage(load_example):
    quickstart = load_example("quickstart")
    with pytest.raises(SystemExit):
        quickstart.main(["--stages", "nope"])


def test_quickstart_pretrain_then_distill_on_tiny(tmp_path, load_example):
    quickstart = load_example("quickstart")
    with pytest.raises(SystemExit, match="run the 'pretrain' stage first"):
        quickstart.main(["--stages", "distill", "--preset", "tiny", "--out", str(tmp_path)])
    results = quickstart.main(["--stages", "pretrain,distill", "--preset", "tiny", "--num-layers", "4",
                               "--pretrain-steps", "12", "--pretrain-batch", "8", "--pretrain-seq-len", "64",
                               "--distill-steps", "6", "--out", str(tmp_path)])
    sft = quickstart.main(["--stages", "sft", "--preset", "tiny", "--num-layers", "4", "--sft-steps", "10",
                           "--sft-eval-problems", "4", "--out", str(tmp_path)])["sft"]
    assert 0.0 <= sft["off_pass_at_1"] <= 1.0 and 0.0 <= sft["on_pass_at_1"] <= 1.0
    assert sft["off_mean_length"] > 0 and sft["on_mean_length"] > 0
    assert results["pretrain"]["loss"] < 5.0  # log(272) = 5.6 at initialisation
    assert (tmp_path / "pretrain" / "checkpoints").is_dir()
    table = results["distill"]
    assert {"lm", "cos+kl"} <= set(table)
    assert table["cos+kl"]["kl"] < table["child, sliced"]["kl"]  # distillation moves the child to the parent
