"""Where sequence lengths come from. numpy only; every sampler takes a ``seed``.

* :func:`azure_conv` -- prompt lengths of a **contiguous window** of the real Azure LLM
  inference trace 2023 (conversation service), in the order the requests arrived
  (:mod:`packviz.trace`; CC BY 4.0, Patel et al., "Splitwise", ISCA 2024).
* :func:`azure_resample` -- **synthetic**: prompt lengths drawn with replacement from the
  same trace, for sets larger than its 19,366 requests.
* :func:`seed_scenario` -- the interview question's mix of ~50-token and ~4,000-token prompts.
* :func:`lognormal`, :func:`uniform` -- synthetic.
* :func:`read_lengths` -- a plain file (one length per line) or the Azure CSV format
  (a ``ContextTokens`` column); ``"-"`` reads standard input.
"""

from __future__ import annotations

import array
import csv
import io
import re
import warnings

import numpy as np

from .checks import ascii_int, fraction, nonnegative_float, nonnegative_int, positive_float, positive_int
from . import trace


# ---------------------------------------------------------------------- the real trace
def azure_conv(n: int = 1000, seed: int = 0) -> np.ndarray:
    """Prompt lengths of ``n`` consecutive real requests of the Azure conversation trace, shape (N,).

    A window in arrival order (:meth:`packviz.trace.Trace.window`, start drawn with ``seed``):
    the prompts a server received, one after another. ``n`` is at most 19,366; for more, use
    :func:`azure_resample`.
    """
    conv = trace.azure_conv()
    if _count(n) > len(conv):
        raise ValueError(f"n is {n}, more than the trace's {len(conv):,} requests; "
                         "for more lengths use azure_resample(n) (synthetic draws)")
    return conv.window(n, seed=_seed(seed)).prompt_tokens.copy()


def azure_resample(n: int = 1000, seed: int = 0) -> np.ndarray:
    """``n`` prompt lengths drawn with replacement from the Azure conversation trace, shape (N,).

    Synthetic (independent draws from the real distribution, no real order): for large sets,
    e.g. a million prompts to time a packing strategy.
    """
    return trace.azure_conv().resample(_count(n), seed=_seed(seed)).prompt_tokens.copy()


# ---------------------------------------------------------------------- scenarios
def seed_scenario(n: int = 16, long_fraction: float = 0.25, short: int = 50, long: int = 4000,
                  jitter: float = 0.1, seed: int = 0) -> np.ndarray:
    """The interview question's prompts: mostly ~``short`` tokens, a ``long_fraction`` of ~``long``.

    Lengths vary by up to ``jitter`` (10%) below the nominal value, so the longest is at most
    ``long`` (a 4,000-token context) and the order is shuffled. ``short <= long``, both at most
    2**53 (exact as floats). Shape (n,).

    >>> seed_scenario(8, seed=0).tolist()
    [50, 3892, 50, 47, 3745, 46, 45, 46]
    """
    n = _count(n)
    long_fraction = fraction("long_fraction", long_fraction)
    short, long = positive_int("short", short, maximum=2**53), positive_int("long", long, maximum=2**53)
    if short > long:
        raise ValueError(f"short ({short}) must be at most long ({long}): the long prompts are the longest; swap them")
    jitter = fraction("jitter", jitter)
    rng = np.random.default_rng(_seed(seed))
    n_long = int(round(n * long_fraction))
    nominal = np.array([long] * n_long + [short] * (n - n_long), dtype=np.float64)
    x = nominal * (1 - jitter * rng.random(n))
    return rng.permutation(np.maximum(1, np.rint(x)).astype(np.int64))


def lognormal(n: int = 1000, median: float = 1000, sigma: float = 1.0, max_len: int | None = None,
              seed: int = 0) -> np.ndarray:
    """Lognormal lengths (a common model of prompt lengths), optionally clipped to ``max_len``, shape (N,).

    A draw beyond 2**53 (where floats stop being exact integers) is refused, naming the
    median and sigma that made it, unless ``max_len`` clips it first.

    >>> lognormal(3, median=1e18, sigma=3.0)
    Traceback (most recent call last):
    ...
    ValueError: lognormal(median=1e+18, sigma=3) drew a length of 6.8e+18, beyond 2**53; lower median or sigma, or give max_len
    """
    median = positive_float("median", median)
    sigma = nonnegative_float("sigma", sigma)
    if max_len is not None:
        max_len = positive_int("max_len", max_len, maximum=2**53)
    x = np.random.default_rng(_seed(seed)).lognormal(np.log(median), sigma, _count(n))
    x = np.maximum(1, np.rint(x))
    if max_len is not None:
        x = np.minimum(x, max_len)
    if not x.max() <= 2**53:  # also inf
        raise ValueError(f"lognormal(median={median:g}, sigma={sigma:g}) drew a length of {x.max():.2g}, beyond 2**53; "
                         "lower median or sigma, or give max_len")
    return x.astype(np.int64)


def uniform(n: int = 1000, low: int = 1, high: int = 4096, seed: int = 0) -> np.ndarray:
    """Lengths uniform in ``[low, high]`` (inclusive), shape (N,). ``low == high`` gives the equal-length control."""
    if not positive_int("low", low) <= positive_int("high", high):
        raise ValueError(f"need low <= high, got low={low!r}, high={high!r}; swap them")
    return np.random.default_rng(_seed(seed)).integers(low, high + 1, _count(n)).astype(np.int64)


SOURCES = {
    "seed: 50 vs 4,000": lambda n, seed: seed_scenario(n, seed=seed),
    "Azure conversation trace": lambda n, seed: azure_conv(n, seed=seed),  # a real window
    "Azure trace, resampled": lambda n, seed: azure_resample(n, seed=seed),
    "lognormal (median 1,000)": lambda n, seed: lognormal(n, seed=seed, max_len=8192),
    "uniform 1..4,096": lambda n, seed: uniform(n, seed=seed),
    "equal (2,048)": lambda n, seed: uniform(n, 2048, 2048, seed=seed),
}
"""Named length sources ``f(n, seed) -> lengths``, for widgets and the CLI."""


def _count(n) -> int:
    return positive_int("n (the number of lengths)", n, maximum=trace.MAX_RESAMPLE)


def _seed(seed) -> int:
    return nonnegative_int("seed", seed)


# ---------------------------------------------------------------------- files
def read_lengths(path, column: str = "ContextTokens") -> np.ndarray:
    """Read lengths, shape (N,), from a file: one integer per line, or a CSV whose header has ``column``.

    ``path`` may be ``"-"`` (standard input), ``/dev/stdin`` or a shell's ``<(...)``. Blank
    lines are skipped, and so is everything from a ``#`` to the end of a line in the plain
    format (a comment may hold a comma: the format is told by the first line with a value).
    UTF-8, with or without a BOM. Integers are ASCII digits (``1_000`` and other scripts' digits
are refused, as in a trace) and read exactly: a bad value raises ``ValueError``
    naming the file, the line and the value as written (``9223372036854775808`` is too large,
    never a wrapped negative).

    Ten million lines take well under a second: numpy's C parsers read the file, and only
    when they refuse something does a line-by-line pass find the line to name.
    """
    raw, name = trace.read_input(path, "lengths file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line_no = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{name}, line {line_no}: not UTF-8 text (byte {raw[e.start]:#04x}); "
                         "expected one integer per line or a CSV") from None
    first = _first_value(text)
    if first is None:
        raise ValueError(f"{name}: no lengths found (empty file)")
    if "," in first[1] or first[1] == column:
        return _csv_lengths(text, name, column, first[0])
    fast = _parse_plain_fast(raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw, text)
    return fast if fast is not None else _parse_plain_exact(text, name)


_FIRST_VALUE = re.compile(r"(?:^|[\r\n])[^\S\r\n]*([^\s#][^\r\n#]*)")


def _first_value(text: str) -> tuple[int, str] | None:
    """``(line number, text)`` of the first line with a value (what :func:`_plain_values` yields first)."""
    m = _FIRST_VALUE.search(text)
    if m is None:
        return None
    k = m.start(1)
    return text.count("\n", 0, k) + text.count("\r", 0, k) - text.count("\r\n", 0, k) + 1, m.group(1).strip()


def _plain_values(text: str):
    """``(line number, text)`` of every line with a value, the comment (``#`` on) and spaces cut."""
    for line_no, line in enumerate(io.StringIO(text, newline=None), 1):
        value = line.split("#", 1)[0].strip()
        if value:
            yield line_no, value


def _parse_plain_fast(body: bytes, text: str) -> np.ndarray | None:
    """numpy's C parsers over the whole file: the lengths (N,), or None when they refuse anything
    or cannot be sure (then :func:`_parse_plain_exact` finds the line to name).

    Never accepts what the exact pass refuses. Bytes that are only digits and line ends hold
    one integer per line: ``np.fromstring`` reads them (it clamps a value beyond int64 to
    2**63 - 1, so that value is left to the exact pass). Anything else -- spaces, comments,
    signs -- goes to ``np.loadtxt``, which refuses two values on a line, floats and overflow.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loadtxt's "no data": the exact pass says it better
        if not body.translate(None, b"0123456789\r\n"):
            arr = np.fromstring(body, dtype=np.int64, sep=" ")
        else:
            try:
                lines = io.StringIO(text, newline=None)  # \r, \n and \r\n end a line, as in the exact pass
                arr = np.loadtxt(lines, dtype=np.int64, delimiter=",", comments="#", ndmin=1)
            except ValueError:
                return None
    ok = arr.ndim == 1 and arr.size and int(arr.min()) >= 1 and int(arr.max()) < 2**63 - 1
    return arr if ok else None


def _parse_plain_exact(text: str, name: str) -> np.ndarray:
    """The plain format line by line (the reference): lengths (N,), or ``ValueError`` naming the first bad line."""
    out = array.array("q")
    for line_no, value in _plain_values(text):
        out.append(_length(name, line_no, value))
    if not out:
        raise ValueError(f"{name}: no lengths found (empty file)")
    return np.frombuffer(out, dtype=np.int64).copy()


def _csv_lengths(text: str, name: str, column: str, header_line: int) -> np.ndarray:
    """The ``column`` of a CSV whose header is on line ``header_line``, shape (N,)."""
    f = io.StringIO(text, newline="")
    for _ in range(header_line - 1):  # comment lines above the header
        f.readline()
    reader = csv.DictReader(f)
    fields = reader.fieldnames or []
    if column not in fields:
        if all(_is_int(x) for x in fields):  # a number with a comma, not a header
            raise ValueError(f"{name}, line {header_line}: {','.join(fields)!r} is not an integer length "
                             f"(and not a CSV header with a {column!r} column)")
        raise ValueError(f"{name}: CSV header {fields} has no {column!r} column")
    out = array.array("q")
    for row in reader:
        line_no = reader.line_num + header_line - 1
        if row[column] is None:
            raise ValueError(f"{name}, line {line_no}: no {column!r} value (the row is shorter than the header)")
        out.append(_length(name, line_no, row[column].strip()))
    if not out:
        raise ValueError(f"{name}: no lengths found (a CSV header but no rows)")
    return np.frombuffer(out, dtype=np.int64).copy()


def _length(name: str, line_no: int, text: str) -> int:
    """One length as written on a line: an integer from 1 to 2**63 - 1, else ``ValueError`` naming it."""
    value = ascii_int(text)
    if value is None:
        raise ValueError(f"{name}, line {line_no}: {text!r} is not an integer length (ASCII digits, e.g. 512)")
    if value > 2**63 - 1:
        raise ValueError(f"{name}, line {line_no}: {value} is too large for a length (more than 2**63 - 1 tokens)")
    if value < 1:
        raise ValueError(f"{name}, line {line_no}: {value} is not a length; lengths are integers >= 1")
    return value


def _is_int(text) -> bool:
    return ascii_int(text) is not None
