"""The checks every public function and command repeats, in one place. numpy only (no torch).

Each check returns the value it accepted (converted: ``positive_int`` gives a Python ``int``)
or raises ``ValueError`` with one line that names the parameter, shows the bad value and says
what would be accepted::

    >>> positive_int("batch_size", 32)
    32
    >>> positive_int("batch_size", 0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be a positive integer, got 0
    >>> one_of("policy", "fifo", ("static", "continuous"))
    Traceback (most recent call last):
    ...
    ValueError: policy must be one of 'static', 'continuous'; got 'fifo'
"""

from __future__ import annotations

import math
import numbers


def show(value) -> str:
    """``repr`` of a value, numpy scalars as their Python value, cut to 80 characters."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_integer(value) -> bool:
    """True for Python and numpy integers, False for bools, floats (also 3.0) and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def positive_int(name: str, value, maximum: int | None = None) -> int:
    """``value`` as an ``int`` >= 1 (and <= ``maximum`` when given), else ``ValueError``."""
    if not is_integer(value) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {show(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} is {show(value)}, above the largest allowed value {maximum:,}")
    return int(value)


def nonnegative_int(name: str, value) -> int:
    """``value`` as an ``int`` >= 0, else ``ValueError``."""
    if not is_integer(value) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {show(value)}")
    return int(value)


def positive_float(name: str, value, maximum: float | None = None) -> float:
    """``value`` as a finite ``float`` > 0 (and <= ``maximum``), else ``ValueError`` (NaN and inf too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {show(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} is {show(value)}, above the largest allowed value {maximum:g}")
    return float(value)


def fraction(name: str, value, *, open_low: bool = False) -> float:
    """``value`` as a float in [0, 1] (``open_low``: in (0, 1]), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not (0 < value <= 1 if open_low else 0 <= value <= 1):
        rng = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} must be a number in {rng}, got {show(value)}")
    return float(value)


def one_of(name: str, value, choices) -> object:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {show(value)}")
    return value
