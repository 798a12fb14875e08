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
    >>> int_array("lengths", [3, 2, 0])
    Traceback (most recent call last):
    ...
    ValueError: lengths[2] is 0: lengths must be integers >= 1
    >>> int_pair("tile", (128, 64))
    (128, 64)
    >>> int_in_range("n", 600, 1, 512)
    Traceback (most recent call last):
    ...
    ValueError: n must be an integer from 1 to 512, got 600
"""

from __future__ import annotations

import math
import numbers
import re

import numpy as np


def show(value) -> str:
    """``repr`` of a value on one line, numpy scalars as their Python value, cut to 80 characters."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    text = " ".join(repr(value).splitlines())  # an array's repr spans lines; a message is one
    return text if len(text) <= 80 else text[:77] + "..."


def is_integer(value) -> bool:
    """True for Python and numpy integers, False for bools, floats (also 3.0) and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


ASCII_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
"""An integer as a file or a command line writes it: ASCII digits, an optional sign. Python's ``int()``
also takes ``1_000`` and other scripts' digits (``\u0663``); a typo should not become a number."""


def ascii_int(text) -> int | None:
    """``text`` (a string; spaces around it ignored) as an ``int`` if it is written in ASCII digits
    (:data:`ASCII_INTEGER`), else ``None``: every reader of integers in text uses this one rule.

    >>> ascii_int(" 42"), ascii_int("-3"), ascii_int("1_000"), ascii_int("\u0663"), ascii_int("4.0")
    (42, -3, None, None, None)
    """
    if not isinstance(text, str) or not ASCII_INTEGER.fullmatch(text.strip()):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits())
        return None


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


def int_in_range(name: str, value, low: int, high: int) -> int:
    """``value`` as an ``int`` with ``low <= value <= high`` (a slider's range), else ``ValueError`` naming both ends."""
    if not is_integer(value) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low:,} to {high:,}, got {show(value)}")
    return int(value)


def positive_float(name: str, value, maximum: float | None = None) -> float:
    """``value`` as a finite ``float`` > 0 (and <= ``maximum``), else ``ValueError`` (NaN and inf too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {show(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} is {show(value)}, above the largest allowed value {maximum:g}")
    return float(value)


def nonnegative_float(name: str, value) -> float:
    """``value`` as a finite ``float`` >= 0, else ``ValueError`` (NaN and inf too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {show(value)}")
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


def int_pair(name: str, value) -> tuple[int, int]:
    """``value`` as a pair of positive ``int`` s (e.g. a kernel tile ``(block_q, block_k)``), else ``ValueError``."""
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of positive integers, e.g. (128, 128); got {show(value)}") from None
    if not (is_integer(a) and is_integer(b) and a > 0 and b > 0):
        raise ValueError(f"{name} must be a pair of positive integers, e.g. (128, 128); got {show(value)}")
    return int(a), int(b)


def real_number(name: str, value) -> float:
    """``value`` as a finite ``float`` of any sign (numpy floats too), else ``ValueError`` (bools, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {show(value)}")
    return float(value)


def flag(name: str, value) -> bool:
    """``value`` as a ``bool`` (Python or numpy ``True`` / ``False``), else ``ValueError`` (1, "no", None ...)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {show(value)}")
    return bool(value)


def instance_of(name: str, value, cls, what: str):
    """``value`` if it is a ``cls``, else ``TypeError`` naming what it is and ``what`` would do.

    >>> instance_of("layout", [3, 5], dict, "a dict, e.g. {'a': 1}")
    Traceback (most recent call last):
    ...
    TypeError: layout must be a dict, e.g. {'a': 1}; got list [3, 5]
    """
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be {what}; got {type(value).__name__} {show(value)}")
    return value


def mapping(name: str, value, keys=(), what: str = "a dict") -> dict:
    """``value`` if it is a dict (any ``Mapping``) holding ``keys``, else ``TypeError`` / ``ValueError`` naming them."""
    from collections.abc import Mapping

    instance_of(name, value, Mapping, what)
    missing = [k for k in keys if k not in value]
    if missing:
        raise ValueError(f"{name} has no {missing[0]!r}: it must be {what}")
    return value


def items(name: str, value, what: str = "a list") -> list:
    """``value`` (a list, tuple or other iterable, not a string, dict or scalar) as a ``list``, else ``TypeError``."""
    from collections.abc import Iterable, Mapping

    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable) or getattr(value, "ndim", 1) == 0:
        raise TypeError(f"{name} must be {what}; got {type(value).__name__} {show(value)}")
    return list(value)


_INT64_MAX = np.iinfo(np.int64).max


def finite_floats(name: str, values, what: str = "seconds") -> np.ndarray:
    """``values`` as a float64 array of finite numbers (any shape), else one ``ValueError`` naming ``name``.

    >>> finite_floats("arrival_s", [0, 1.5]).tolist()
    [0.0, 1.5]
    >>> finite_floats("times", [1.0, float("nan")])
    Traceback (most recent call last):
    ...
    ValueError: times must be finite seconds, got [1.0, nan]
    """
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be {what} (numbers), got {show(values)}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {what} (numbers), got {show(values)}") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite {what}, got {show(values)}")
    return arr


def exact_sum(values: np.ndarray) -> int:
    """Sum of an int64 array (N,) as an exact Python ``int``: numpy while no partial sum can
    overflow int64 (``max |value| * N < 2**63``), Python integers beyond.

    >>> exact_sum(np.array([2**62, 2**62, 2**62]))
    13835058055282163712
    """
    values = np.asarray(values)
    if not values.size:
        return 0
    if values.dtype.kind in "iu":
        bound = max(abs(int(values.max())), abs(int(values.min())))
        if bound * values.size < 2**63:
            return int(values.sum(dtype=np.int64))
    return sum(int(v) for v in values.tolist())


def int_array(name: str, values, minimum: int = 1, allow_empty: bool = False) -> np.ndarray:
    """``values`` as a 1-D int64 array whose entries are all >= ``minimum``, shape (N,); else ``ValueError``.

    Accepted: a list, tuple or array of Python or numpy integers. Refused, with the index and
    the value in the message: a string, more than one dimension, an empty input (unless
    ``allow_empty``), floats (also 3.0: a count is an integer), NaN, booleans, entries below
    ``minimum`` or beyond int64.
    """
    rule = f"{name} must be integers >= {minimum}"
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of integers, got the string {show(values)}")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        if allow_empty:
            return np.zeros(0, dtype=np.int64)
        raise ValueError(f"{name} is empty: give at least one value")
    if arr.dtype.kind not in "iu" or not isinstance(values, np.ndarray):
        # the first entry that is not an integer (bools hide in int arrays, floats in object ones)
        for i, v in enumerate(arr.tolist() if isinstance(values, np.ndarray) else values):
            if not is_integer(v):
                raise ValueError(f"{name}[{i}] is {show(v)}: {rule}")
        if arr.dtype.kind not in "iu":  # Python ints numpy made floats (e.g. [3, 2**63]): keep them exact
            arr = np.array(list(values), dtype=object)
    if arr.dtype == object or arr.dtype == np.uint64:  # Python ints beyond int64, or uint64 ones
        for i, v in enumerate(arr.tolist()):
            if v > _INT64_MAX:
                raise ValueError(f"{name}[{i}] is {v}: too large (more than 2**63 - 1)")
            if v < minimum:
                raise ValueError(f"{name}[{i}] is {v}: {rule}")
    arr = arr.astype(np.int64, copy=False)
    bad = arr < minimum
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] is {int(arr[i])}: {rule}")
    return arr
