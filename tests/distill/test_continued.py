import jax

from lnemo.data import ByteTokenizer
from lnemo.distill import continued_pretraining
from lnemo.sharding import make_mesh

CORPUS = [f"the {w} sat on the mat and the {w} ate." for w in ("cat", "dog", "bird", "fox", "cow", "hen")] * 8


def test_continued_pretraining_lowers_held_out_loss_with_lm_and_with_kd(teacher, student):
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    s_cfg, s_params = student
    kw = {"num_steps": 10, "seq_len": 64, "batch_size": 8, "learning_rate": 3e-3, "eval_texts": CORPUS[:24],
          "eval_batches": 1}
    _, lm = continued_pretraining(s_cfg, s_params, CORPUS, ByteTokenizer(), mesh, **kw)
    assert lm["lm"] < 4.5  # from log(272) = 5.6 nats at initialisation
    _, kd = continued_pretraining(s_cfg, s_params, CORPUS, ByteTokenizer(), mesh, teacher=teacher, **kw)
    assert set(kd) == {"lm", "kl"} and jax.numpy.isfinite(kd["kl"])
