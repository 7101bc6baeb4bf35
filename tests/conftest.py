"""Test set-up: float64 is available in every test (as in diffrax's suite); float32 tests ask for
float32 explicitly, so the order in which tests run never changes a dtype.

The float32 tier (tests/float32/) runs the same way users do, with x64 off: test_float32_tier.py
starts it as a separate pytest process with IL2RD_TEST_X64=0 (x64 is a process-wide switch)."""

import os

import jax

if os.environ.get("IL2RD_TEST_X64", "1") != "0":
    jax.config.update("jax_enable_x64", True)
