import json


def test_pretrain_tiny_loss_falls_and_resumes(tmp_path, load_example):
    pretrain = load_example("pretrain")
    args = ["--preset", "tiny", "--batch", "8", "--seq-len", "64", "--warmup", "5", "--eval-every", "10",
            "--checkpoint-every", "10", "--eval-batches", "2", "--out", str(tmp_path), "--no-progress"]
    first = pretrain.main(args + ["--steps", "20"])
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in records if "loss" in r]
    assert train_losses[-1] < train_losses[0] - 1.0  # from ~log(272) = 5.6 nats down
    assert first["loss"] < 4.0
    resumed = pretrain.main(args + ["--steps", "30"])  # continues from the step-20 checkpoint
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())[-1] == 30
    assert resumed["loss"] < first["loss"]
