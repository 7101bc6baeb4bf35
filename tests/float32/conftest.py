"""The float32 tier: tests of the default precision with JAX's x64 switched off, as users run.
They only mean something in a process with x64 off, which test_float32_tier.py starts; in the
main (x64) session they are skipped."""

import jax
import pytest


def pytest_collection_modifyitems(config, items):
    if jax.config.jax_enable_x64:
        skip = pytest.mark.skip(reason="float32 tier: run with x64 off by tests/test_float32_tier.py")
        for item in items:
            if "float32" in item.path.parts:
                item.add_marker(skip)


def pytest_configure(config):
    # scenarios shared with the x64 tests ask for float64 inputs, which x64-off JAX truncates to float32
    config.addinivalue_line("filterwarnings", "ignore:Explicitly requested dtype float64:UserWarning")
