"""Test configuration: 8 simulated CPU devices, set before JAX starts."""

import os

os.environ.setdefault("XLA_FLAGS", "")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
