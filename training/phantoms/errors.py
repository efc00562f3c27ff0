"""Exceptions of the phantom generator."""

from __future__ import annotations


class PhantomError(ValueError):
    """The phantom generator was asked for something it cannot make."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
