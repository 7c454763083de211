"""A msgspec Struct's twin read from a msgpack array of its fields (a stored body).

The journal's bodies (schema 9) and the paper file's bodies store an ``Order``,
a ``Fill`` or a ``WorkingOrder`` as the array of its fields in their declared
order. Decoding one takes a class with the same fields, types and defaults,
marked ``array_like``: ``array_twin`` derives it from the class itself, so there
is no second list of the fields to keep in step.
"""

from __future__ import annotations

from typing import Any

import msgspec


def array_twin(cls: type[msgspec.Struct], name: str, **types: Any) -> Any:
    """A Struct named ``name`` with ``cls``'s fields in their order, their defaults and
    their types (``types``' where a field is named there), read from a msgpack array."""
    spec: list[Any] = []
    for f in msgspec.structs.fields(cls):
        kind = types.get(f.name, f.type)
        if f.default is not msgspec.NODEFAULT:
            spec.append((f.name, kind, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            spec.append((f.name, kind, msgspec.field(default_factory=f.default_factory)))
        else:
            spec.append((f.name, kind))
    return msgspec.defstruct(name, spec, array_like=True)
