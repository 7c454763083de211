"""mypyc's class options (``mypyc_attr``) and native integers (``i64``) without
``mypy_extensions`` at run time.

mypyc reads the decorator where the type checker resolves it (``mypy_extensions``);
at run time it only has to return the class unchanged, which this module's own
function does, so neither the pure nor the compiled install needs the package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

T = TypeVar("T")

if TYPE_CHECKING:
    from mypy_extensions import i64 as i64
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    #: A 64-bit machine integer where compiled (mypyc reads the type where the type checker
    #: resolves it); a plain ``int`` at run time, pure or compiled. Only for values that fit.
    i64 = int

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Callable[[T], T]:
        """The class as it is: the options are for mypyc, read at compile time."""
        return lambda cls: cls
