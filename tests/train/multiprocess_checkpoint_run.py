"""One of two processes saving and restoring a checkpoint together (used by tests/test_checkpoint.py).

Usage: python multiprocess_checkpoint_run.py PROCESS_ID PORT CHECKPOINT_DIR
Prints one line ``RESULT {json}`` with what this process restored.
"""

import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 2)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from lnemo.checkpoint import Checkpointer  # noqa: E402
from lnemo.sharding import make_mesh, param_shardings, with_shardings  # noqa: E402


def main(process_id, port, directory):
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    mesh = make_mesh({"data": -1})  # 2 processes x 2 devices
    abstract = {"w": jax.ShapeDtypeStruct((8, 4), jnp.float32)}
    shardings = param_shardings(abstract, {"w": ("batch", None)}, mesh)
    w = jax.jit(lambda: jnp.arange(32.0).reshape(8, 4), out_shardings=shardings["w"])()
    # The data states differ per process, as with grain iterators over per-process shards.
    with Checkpointer(directory, config={"processes": 2}) as ckpt:
        ckpt.save(1, {"w": w}, data_state={"process": process_id, "rows": list(range(process_id + 1))})
    with Checkpointer(directory) as ckpt:
        restored = ckpt.restore(with_shardings(abstract, shardings))
    full = multihost_utils.process_allgather(restored.state["w"], tiled=True)
    result = {
        "data_state": restored.data_state,
        "config": restored.config,
        "w_equal": bool(np.array_equal(full, np.arange(32.0).reshape(8, 4))),
        "w_sharded": restored.state["w"].sharding == shardings["w"],
    }
    print("RESULT " + json.dumps(result), flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
