"""Declared algorithm parameters: each has a name, a type, a default and a one-line meaning.

An algorithm module declares its parameters once, next to its builder, and
the builder binds what it is given against them: an unknown name or a value
of the wrong type is a ValueError naming the valid ones, so nothing reaches a
builder by accident. ``flyersim run --algo X --help-params`` prints the table.

>>> P = Params("demo", Param("chunks", int, None, "pipeline chunks (default: from the size)"),
...            Param("gdrcopy", bool, True, "H2D by GDRCopy"))
>>> P.bind({"chunks": 4})
{'chunks': 4, 'gdrcopy': True}
>>> P.bind({"chunk": 4})
Traceback (most recent call last):
ValueError: demo has no parameter 'chunk' (valid: chunks, gdrcopy)
>>> P.bind({"gdrcopy": 1})
Traceback (most recent call last):
ValueError: demo: gdrcopy must be of type bool, got 1
>>> print(P.help())
chunks   int   default None  pipeline chunks (default: from the size)
gdrcopy  bool  default True  H2D by GDRCopy

An unpublished parameter declares its plausible range beside its default
(``range=(low, high)``), which ``flyersim sensitivity`` sweeps:

>>> Params("demo", Param("buffers", int, 8, "staging slots", range=(2, 64))).ranges()
{'buffers': (2, 64)}
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Param:
    """One parameter: ``type`` is a Python type or a tuple of them (``None`` is accepted when it is the default);
    ``range``: the ``(low, high)`` an unpublished value plausibly lies in, or None."""

    name: str
    type: object
    default: object
    help: str
    range: tuple | None = None

    def __post_init__(self):
        if self.range is not None and not self.range[0] <= self.default <= self.range[1]:
            raise ValueError(f"{self.name}: default {self.default!r} outside its range {self.range}")

    def type_name(self):
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        return "|".join(t.__name__ for t in types)

    def check(self, algo, value):
        """``value`` if it has the declared type (an integer numpy scalar counts as an int), else ValueError."""
        if value is None and self.default is None:
            return value
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        ok = any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in types) \
            or (int in types and isinstance(value, np.integer))
        if not ok:
            raise ValueError(f"{algo}: {self.name} must be of type {self.type_name()}, got {value!r}")
        return value


class Params:
    """The declared parameters of algorithm ``algo``, in order."""

    def __init__(self, algo, *params):
        self.algo = algo
        self.items = tuple(params)
        self.by_name = {p.name: p for p in self.items}

    def __contains__(self, name):
        return name in self.by_name

    def names(self):
        return [p.name for p in self.items]

    def ranges(self):
        """``{name: (low, high)}`` of the parameters that declare a range, in declared order."""
        return {p.name: p.range for p in self.items if p.range is not None}

    def bind(self, given):
        """Every parameter's value: ``given`` (checked) over the defaults."""
        for name in given:
            if name not in self.by_name:
                valid = ", ".join(self.names()) or "none"
                raise ValueError(f"{self.algo} has no parameter {name!r} (valid: {valid})")
        return {p.name: p.check(self.algo, given[p.name]) if p.name in given else p.default for p in self.items}

    def help(self, given=None):
        """One line per parameter: name, type, value (``given`` over the default) and meaning."""
        if not self.items:
            return f"{self.algo} takes no parameters"
        given = given or {}
        rows = [(p.name, p.type_name(), f"{'set' if p.name in given else 'default'} {given.get(p.name, p.default)!r}",
                 p.help) for p in self.items]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows)
