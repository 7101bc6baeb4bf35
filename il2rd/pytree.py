"""`dataclass`: a frozen dataclass as a JAX pytree whose tree structure names its class.

Why not jax.tree_util.register_dataclass: in jaxlib 0.10.2 the tree structures of two such classes
with the same fields compare *equal* (their hashes differ). jit caches compiled programs by the
tree structure of their arguments, so a cache probe that meets the other class's entry (a hash
collision in one probe group: rare, and dependent on what else the process compiled) runs the
other class's program. il2rd's steppers (Steady, BackwardEuler, ForwardEuler) have the same fields
and share `initialize` and `advance`: the test suite got a steady field of zeros (the explicit
initial state) or an implicit run failing as a steady solve would, about one suite run in four,
in whichever process had compiled enough before (tests/test_pytree.py). A node registered with
register_pytree_with_keys compares its class, so each stepper's programs are its own.

Static fields are those with `field(metadata=dict(static=True))`, as for register_dataclass: they
become part of the tree structure (jit static arguments) and must be hashable; every other field
with init=True is a child (traced). Unflattening calls the class, as register_dataclass does.
"""

from __future__ import annotations

import dataclasses

import jax

STATIC = dict(static=True)  # field metadata of a static field


def dataclass(cls):
    """Register the dataclass `cls` as a pytree node (children: its non-static init fields; aux
    data: the values of its static ones) and return it."""
    fields = [f for f in dataclasses.fields(cls) if f.init]
    children = tuple(f.name for f in fields if not f.metadata.get("static", False))
    static = tuple(f.name for f in fields if f.metadata.get("static", False))
    keys = tuple(jax.tree_util.GetAttrKey(name) for name in children)

    def flatten(x):
        return tuple(getattr(x, name) for name in children), tuple(getattr(x, name) for name in static)

    def flatten_with_keys(x):
        values, aux = flatten(x)
        return tuple(zip(keys, values)), aux

    def unflatten(aux, values):
        return cls(**dict(zip(children, values)), **dict(zip(static, aux)))

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls
