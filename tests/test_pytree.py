"""il2rd's pytree classes (il2rd/pytree.py): a tree structure names its class, so jit never hands one
stepper another's compiled program.

With jax.tree_util.register_dataclass (jaxlib 0.10.2), Steady, BackwardEuler and ForwardEuler on the
same coefficients had tree structures that compared equal: the suite then got, about one run in four,
a steady field of zeros (the transient steppers' initial state, from `initialize`) and an explicit
run 4e-3 off its reference (backward Euler's `advance`). Which entry a jit cache probe meets depends
on everything compiled before, so the wrong answers themselves cannot be provoked on demand; what
they need, equal structures, is tested here."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import coefficients

from il2rd import pytree
from il2rd.solvers import steppers
from il2rd.physics.grid import Grid
from il2rd.solvers.steady import SolverOptions

SHAPE = (6, 5, 4)
FIELD_KINDS = ("steady", "implicit", "explicit")  # the steppers whose fields are the same (coef, grid, options)


@pytree.dataclass
@dataclass(frozen=True)
class Twin:
    x: jax.Array
    label: str = field(metadata=pytree.STATIC)


@pytree.dataclass
@dataclass(frozen=True)
class OtherTwin:
    x: jax.Array
    label: str = field(metadata=pytree.STATIC)


def built(kind: str):
    grid = Grid(SHAPE, 5.0)
    coef = coefficients(SHAPE, secretion=np.eye(SHAPE[0], SHAPE[1])[:, :, None] * np.ones(SHAPE), vmax=0.5, km=40.0)
    return steppers.build(kind, coef, grid, SolverOptions())


def test_classes_with_the_same_fields_have_different_structures():
    a, b = Twin(jnp.ones(3), "t"), OtherTwin(jnp.ones(3), "t")
    assert jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(Twin(jnp.zeros(3), "t"))
    assert jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(Twin(jnp.ones(3), "u"))  # static: part of it


@pytest.mark.parametrize("first, second", list(itertools.combinations(FIELD_KINDS, 2)))
def test_steppers_of_one_problem_have_different_structures(first, second):
    one, other = built(first), built(second)
    assert jax.tree_util.tree_leaves(one) and len(jax.tree_util.tree_leaves(one)) == len(jax.tree_util.tree_leaves(other))
    assert jax.tree_util.tree_structure(one) != jax.tree_util.tree_structure(other)


def test_round_trip_and_key_paths():
    stepper = built("implicit")
    leaves, structure = jax.tree_util.tree_flatten(stepper)
    again = jax.tree_util.tree_unflatten(structure, leaves)
    assert type(again) is type(stepper) and again.grid == stepper.grid and again.options == stepper.options
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(stepper)[0]]
    assert ".coef.secretion_pM_per_s" in paths and not any(".grid" in p for p in paths)


def test_one_kernel_runs_each_class_its_own_program():
    """`initialize` called with each kind in turn returns each kind's own initial state."""
    fields = {kind: np.asarray(steppers.initialize(built(kind), 0.0)[0]) for kind in FIELD_KINDS * 2}
    assert fields["steady"].max() > 0
    assert fields["implicit"].max() == 0 and fields["explicit"].max() == 0
