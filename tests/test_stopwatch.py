"""The run's stage timer (il2rd/stopwatch.py): nested stages are charged exclusively, so the stages
add up to the time measured, and JAX's compilation is counted."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import pytest

from il2rd.stopwatch import Stopwatch


def test_nested_stages_are_charged_exclusively_and_add_up():
    watch = Stopwatch()
    with watch.stage("outer"):
        time.sleep(0.02)
        for _ in range(2):
            with watch.stage("inner"):
                time.sleep(0.03)
    total = watch.total_s
    assert list(watch.seconds) == ["outer", "inner"]
    assert watch.seconds["inner"] >= 0.06
    assert 0.02 <= watch.seconds["outer"] < 0.02 + watch.seconds["inner"]  # the inner time is not charged twice
    assert sum(watch.seconds.values()) == pytest.approx(total, abs=0.01)
    assert set(watch.attrs()) == {"time_outer_s", "time_inner_s", "time_compile_s"}


def test_compilation_is_counted():
    watch = Stopwatch()
    with watch.stage("first call"):
        jax.jit(lambda x: jnp.cos(x) * 3.0 + 1.0)(jnp.arange(17.0)).block_until_ready()
    assert 0 < watch.compile_s <= watch.total_s
    assert "JAX tracing and compiling" in watch.format()


def test_a_stage_is_announced_once_and_never_inside_another():
    """The status lines (output.progress): the first top-level start of each stage, so that a
    transient run's per-snapshot readouts and writes inside the solve do not print a line each."""
    heard = []
    watch = Stopwatch(announce=heard.append)
    with watch.stage("set-up"):
        pass
    with watch.stage("solve"):
        for _ in range(3):
            with watch.stage("readouts"):
                pass
    for _ in range(2):
        with watch.stage("attribution"):
            pass
    with watch.stage("readouts"):
        pass
    assert heard == ["set-up", "solve", "attribution", "readouts"]
