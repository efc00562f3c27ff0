"""Tolerant readers of numeric attribute values (real files carry odd ones)."""

from __future__ import annotations

import math

from pydicom.multival import MultiValue


def first_value(value: object) -> float | None:
    """The first of a multi-valued attribute as a finite float, else None."""
    if isinstance(value, list | tuple | MultiValue):
        value = value[0] if len(value) else None
    return finite_float(value, default=None)


def finite_float(value: object, *, default: float | None) -> float | None:
    """``value`` as a finite float, or ``default`` when it is not one."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default
