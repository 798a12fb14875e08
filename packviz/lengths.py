"""Where sequence lengths come from. numpy only; every sampler takes a ``seed``.

* :func:`azure_conv` -- prompt lengths of a **contiguous window** of the real Azure LLM
  inference trace 2023 (conversation service), in the order the requests arrived
  (:mod:`packviz.trace`; CC BY 4.0, Patel et al., "Splitwise", ISCA 2024).
* :func:`azure_resample` -- **synthetic**: prompt lengths drawn with replacement from the
  same trace, for sets larger than its 19,366 requests.
* :func:`seed_scenario` -- the interview question's mix of ~50-token and ~4,000-token prompts.
* :func:`lognormal`, :func:`uniform` -- synthetic.
* :func:`read_lengths` -- a plain file (one length per line) or the Azure CSV format
  (a ``ContextTokens`` column).
"""

from __future__ import annotations

import csv
import io
import pathlib

import numpy as np

from .checks import fraction, int_array, nonnegative_float, nonnegative_int, positive_float, positive_int
from . import trace


# ---------------------------------------------------------------------- the real trace
def azure_conv(n: int = 1000, seed: int = 0) -> np.ndarray:
    """Prompt lengths of ``n`` consecutive real requests of the Azure conversation trace, shape (N,).

    A window in arrival order (:meth:`packviz.trace.Trace.window`, start drawn with ``seed``):
    the prompts a server received, one after another. ``n`` is at most 19,366; for more, use
    :func:`azure_resample`.
    """
    return trace.azure_conv().window(_count(n), seed=_seed(seed)).prompt_tokens.copy()


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
    ``long`` (a 4,000-token context) and the order is shuffled. Shape (n,).

    >>> seed_scenario(8, seed=0).tolist()
    [50, 3892, 50, 47, 3745, 46, 45, 46]
    """
    n = _count(n)
    long_fraction = fraction("long_fraction", long_fraction)
    short, long = positive_int("short", short), positive_int("long", long)
    jitter = fraction("jitter", jitter)
    rng = np.random.default_rng(_seed(seed))
    n_long = int(round(n * long_fraction))
    nominal = np.array([long] * n_long + [short] * (n - n_long), dtype=np.float64)
    x = nominal * (1 - jitter * rng.random(n))
    return rng.permutation(np.maximum(1, np.rint(x)).astype(np.int64))


def lognormal(n: int = 1000, median: float = 1000, sigma: float = 1.0, max_len: int | None = None,
              seed: int = 0) -> np.ndarray:
    """Lognormal lengths (a common model of prompt lengths), optionally clipped to ``max_len``, shape (N,)."""
    median = positive_float("median", median)
    sigma = nonnegative_float("sigma", sigma)
    if max_len is not None:
        max_len = positive_int("max_len", max_len)
    x = np.random.default_rng(_seed(seed)).lognormal(np.log(median), sigma, _count(n))
    x = np.maximum(1, np.rint(x))
    if max_len is not None:
        x = np.minimum(x, max_len)
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
    return positive_int("n (the number of lengths)", n)


def _seed(seed) -> int:
    return nonnegative_int("seed", seed)


# ---------------------------------------------------------------------- files
def read_lengths(path, column: str = "ContextTokens") -> np.ndarray:
    """Read lengths from a file: one integer per line, or a CSV whose header has ``column``.

    Blank lines and lines starting with ``#`` are skipped in the plain format (a comment may
    hold a comma: the format is told by the first other line). UTF-8, with or without a BOM.
    A bad value raises ``ValueError`` naming the file, the line and the value.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a lengths file")
    if not path.is_file():
        raise ValueError(f"lengths file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line_no = e.object[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line_no}: not UTF-8 text (byte {e.object[e.start]:#04x}); "
                         "expected one integer per line or a CSV") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    lines = text.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")), None)
    if first is not None and ("," in lines[first] or lines[first].strip() == column):
        reader = csv.DictReader(io.StringIO("".join(lines[first:]), newline=""))
        if column not in (reader.fieldnames or []):
            if all(_is_int(f) for f in reader.fieldnames):  # a number with a comma, not a header
                raise ValueError(f"{path}, line {first + 1}: {lines[first].strip()!r} is not an integer length "
                                 f"(and not a CSV header with a {column!r} column)")
            raise ValueError(f"{path}: CSV header {reader.fieldnames} has no {column!r} column")
        values = [(reader.line_num + first, row[column]) for row in reader]
    else:
        values = [(i + 1, line.strip()) for i, line in enumerate(lines)
                  if line.strip() and not line.lstrip().startswith("#")]
    out = []
    for line_no, text in values:
        if text is None:
            raise ValueError(f"{path}, line {line_no}: no {column!r} value (the row is shorter than the header)")
        try:
            out.append(int(str(text).strip()))
        except ValueError:
            raise ValueError(f"{path}, line {line_no}: {text!r} is not an integer length") from None
        if not 1 <= out[-1] <= 2**63 - 1:
            why = "too large for a length (more than 2**63 - 1 tokens)" if out[-1] > 0 else \
                "not a length; lengths are integers >= 1"
            raise ValueError(f"{path}, line {line_no}: {out[-1]} is {why}")
    if not out:
        raise ValueError(f"{path}: no lengths found (empty file)")
    return int_array("lengths", out)


def _is_int(text) -> bool:
    try:
        int(text)
    except (TypeError, ValueError):
        return False
    return True
