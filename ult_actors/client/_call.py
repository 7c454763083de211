"""``Call``: one request ready to send, and how its reply becomes the method's result.

A module of its own, never compiled: mypyc drops a class statement's keywords
(``frozen=True`` here) without a word, and the modules that build calls are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec

from ult_actors.messages import Reply, Request

T = TypeVar("T")


class Call(msgspec.Struct, Generic[T], frozen=True):
    """One request ready to send, and how its reply becomes the method's result.

    Never encoded: it stays in the client (a Struct only because it is the
    cheapest frozen record to make, and one is made per request).
    """

    request: Request
    read: Callable[[Reply], T]
