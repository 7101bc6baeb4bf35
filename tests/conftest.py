"""Test set-up: float64 is available in every test (as in diffrax's suite); float32 tests ask for
float32 explicitly, so the order in which tests run never changes a dtype."""

import jax

jax.config.update("jax_enable_x64", True)
