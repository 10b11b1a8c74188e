"""A wrapper for secret values: private keys, tokens, passwords.

Every layer that holds a secret holds it as ``Sensitive``: its ``repr``,
``str`` and ``format`` print ``<sensitive>``, so a secret that slips into a
log line, an exception message, a plan or a dataclass repr stays masked.
Code that must use the value says so by calling ``reveal()``, which makes
each use easy to find in review.
"""

from __future__ import annotations

import hmac
from typing import Any, Generic, NoReturn, TypeVar

T = TypeVar("T", str, bytes)

MASK = "<sensitive>"


class Sensitive(Generic[T]):
    """A secret ``str`` or ``bytes`` that never shows itself by accident."""

    __slots__ = ("_value",)
    _value: T

    def __init__(self, value: T) -> None:
        if not isinstance(value, str | bytes):
            raise TypeError("Sensitive holds str or bytes")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> T:
        """The secret itself. Call only where it is written or sent."""
        return self._value

    def __repr__(self) -> str:
        return MASK

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        # Constant-time, so comparing secrets leaks nothing through timing.
        if not isinstance(other, Sensitive):
            return NotImplemented
        a, b = self._value, other._value
        if type(a) is not type(b):
            return False
        if isinstance(a, str):
            return hmac.compare_digest(a.encode(), str(b).encode())
        return hmac.compare_digest(a, bytes(b))

    def __hash__(self) -> int:
        return hash((Sensitive, self._value))

    def __len__(self) -> int:
        return len(self._value)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("Sensitive is immutable")

    def __reduce__(self) -> NoReturn:
        # Pickling would carry the secret into caches or worker processes unnoticed.
        raise TypeError("Sensitive values are not pickled")


__all__ = ["MASK", "Sensitive"]
