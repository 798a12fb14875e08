"""The real request trace: arrival times, prompt tokens and generated tokens, in arrival order.

numpy only. The package ships the **Azure LLM inference trace 2023, conversation service**
(19,366 requests over 58 minutes; CC BY 4.0, Patel et al., "Splitwise", ISCA 2024; see
``data/README.md``), gzip-compressed and otherwise unchanged. :func:`azure_conv`
loads it; :func:`read_trace` reads any file in the same CSV format::

    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:15:46.6805900,374,44
    2023-11-16 18:15:50.9951690,396,109

A :class:`Trace` holds three arrays of shape (N,), one entry per request in arrival order:
``arrival_s`` (seconds since the first request), ``prompt_tokens`` (P) and
``generated_tokens`` (G). Two ways to take fewer or more requests, and every number in the
suite says which it used:

* :meth:`Trace.window` -- a **contiguous window** of real requests in their real order (a
  seeded start): what a server saw during those seconds. "Arrival order" means this.
* :meth:`Trace.resample` -- **synthetic**: ``n`` (prompt, output) pairs drawn with replacement
  from the trace, Poisson arrivals at the trace's mean rate. For sets larger than the trace
  (a million prompts to time a packer); not a record of any real stream.

>>> t = azure_conv()
>>> len(t), int(t.prompt_tokens.sum()), int(t.generated_tokens.sum())
(19366, 22361870, 4088665)
>>> w = t.window(4, seed=0)
>>> w.prompt_tokens.tolist(), w.generated_tokens.tolist(), float(w.arrival_s[0])
([401, 1010, 911, 1409], [91, 448, 413, 82], 0.0)
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import os
import pathlib
import re
import sys
from dataclasses import dataclass

import numpy as np

from .checks import ascii_int, instance_of, is_integer, nonnegative_int, positive_int, show
from .datafiles import DATA_DIR

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
"""The Azure trace format's columns: arrival time, prompt tokens, generated tokens."""

AZURE_CONV_FILE = "azure_llm_inference_2023_conv.csv.gz"
"""The shipped trace, in the data folder (:data:`packviz.datafiles.DATA_DIR`: top-level ``data/``, in a wheel ``packviz/data/``)."""

MAX_RESAMPLE = 10**9
"""The most requests :meth:`Trace.resample` draws (24 GB of arrays; more is a typo, not a sample)."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Requests in arrival order: three arrays of shape (N,).

    Attributes
    ----------
    arrival_s : float64 (N,)
        Seconds since the trace's first request (non-decreasing; the first is 0).
    prompt_tokens : int64 (N,)
        P: the prompt ("context") length of each request, >= 1.
    generated_tokens : int64 (N,)
        G: the tokens each request generated, >= 1 (one from prefill, G - 1 decode steps).
    name : str
        Where the requests came from (a file, a window of it, a resample).
    timestamps : str
        How a file's TIMESTAMP column was read (one of :data:`TIMESTAMP_FORMS`); ``""`` for a
        trace built in code.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    generated_tokens: np.ndarray
    name: str = "trace"
    timestamps: str = ""

    def __post_init__(self) -> None:
        from .checks import finite_floats

        a = finite_floats("arrival_s", self.arrival_s)
        p = np.asarray(self.prompt_tokens)
        g = np.asarray(self.generated_tokens)
        if not (a.ndim == p.ndim == g.ndim == 1 and len(a) == len(p) == len(g)):
            raise ValueError(f"arrival_s, prompt_tokens and generated_tokens must be 1-D of one length, "
                             f"got shapes {a.shape}, {p.shape}, {g.shape}")
        if len(a) == 0:
            raise ValueError("a trace needs at least one request")
        from .checks import int_array  # floats (also 3.0), bools, < 1 and > 2**63 - 1 refused by index

        p, g = int_array("prompt_tokens", p), int_array("generated_tokens", g)
        if (np.diff(a) < 0).any():
            raise ValueError("arrival_s must be non-decreasing (requests in arrival order)")
        object.__setattr__(self, "arrival_s", a)
        object.__setattr__(self, "prompt_tokens", p.astype(np.int64))
        object.__setattr__(self, "generated_tokens", g.astype(np.int64))

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        """Seconds from the first arrival to the last."""
        return float(self.arrival_s[-1] - self.arrival_s[0])

    @property
    def rate_per_s(self) -> float:
        """Mean arrival rate: (N - 1) / duration (requests per second); ``inf`` if all arrive at once."""
        d = self.duration_s
        return (len(self) - 1) / d if d > 0 else float("inf")

    def window(self, n: int, seed: int | None = 0, start: int | None = None) -> "Trace":
        """``n`` consecutive requests in their real order; arrivals re-based to the window's first.

        The start is ``start`` if given, else drawn uniformly (seeded by ``seed``) from the
        positions where a whole window fits.
        """
        n = positive_int("n", n, maximum=len(self))
        if start is None:
            seed = None if seed is None else nonnegative_int("seed", seed)
            start = int(np.random.default_rng(seed).integers(0, len(self) - n + 1))
        elif not is_integer(start) or not 0 <= start <= len(self) - n:
            raise ValueError(f"start {show(start)} does not leave room for {n} requests in a trace of "
                             f"{len(self)}; use 0 .. {len(self) - n}")
        sl = slice(start, start + n)
        return Trace(self.arrival_s[sl] - self.arrival_s[start], self.prompt_tokens[sl],
                     self.generated_tokens[sl], name=f"{self.name}[{start}:{start + n}]", timestamps=self.timestamps)

    def resample(self, n: int, seed: int = 0) -> "Trace":
        """``n`` synthetic requests: (P, G) pairs drawn with replacement, Poisson arrivals at :attr:`rate_per_s`."""
        n = positive_int("n", n, maximum=MAX_RESAMPLE)
        rng = np.random.default_rng(nonnegative_int("seed", seed))
        pick = rng.integers(0, len(self), n)
        rate = self.rate_per_s
        gaps = rng.exponential(1 / rate, n) if np.isfinite(rate) else np.zeros(n)
        gaps[0] = 0.0
        return Trace(np.cumsum(gaps), self.prompt_tokens[pick], self.generated_tokens[pick],
                     name=f"{self.name} resampled ({n:,}, seed {seed})")

    def scaled(self, rate_scale: float) -> "Trace":
        """The same requests arriving ``rate_scale`` times as fast (2 = twice the rate)."""
        from .checks import positive_float

        rate_scale = positive_float("rate_scale", rate_scale)
        return Trace(self.arrival_s / rate_scale, self.prompt_tokens, self.generated_tokens,
                     name=f"{self.name} x{rate_scale:g} rate", timestamps=self.timestamps)

    def summary(self) -> dict:
        """Counts and percentiles (JSON-ready)."""
        def pct(x):
            q = np.percentile(x, [50, 90, 99])
            return {"min": int(x.min()), "p50": float(q[0]), "mean": float(x.mean()), "p90": float(q[1]),
                    "p99": float(q[2]), "max": int(x.max())}
        return {"name": self.name, "requests": len(self), "duration_s": self.duration_s,
                "rate_per_s": self.rate_per_s, "prompt_tokens_total": int(self.prompt_tokens.sum()),
                "generated_tokens_total": int(self.generated_tokens.sum()),
                "prompt_tokens": pct(self.prompt_tokens), "generated_tokens": pct(self.generated_tokens)}


# ---------------------------------------------------------------------- reading
STDIN = "-"
"""The path that means standard input (as in ``cat lengths.txt | python -m packviz pack --lengths -``)."""


def read_input(path, what: str = "file") -> tuple[bytes, str]:
    """``(bytes, name)`` of an input: a file, ``"-"`` (standard input), or a device or pipe that
    reads like one (``/dev/stdin``, a shell's ``<(...)``). ``name`` is for messages.

    Refused with one line naming the path: a directory, a path that does not exist, one that
    cannot be read.
    """
    instance_of("path", path, (str, os.PathLike), f"a {what} path (a str or pathlib.Path), or '-' for "
                "standard input")
    if str(path) == STDIN:
        return sys.stdin.buffer.read(), "<stdin>"
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a {what}")
    if not path.exists():
        raise ValueError(f"{what} not found: {path}")
    try:
        with open(path, "rb") as f:  # not read_bytes(): a pipe has no size to read up to
            return f.read(), str(path)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None


def _open_text(raw: bytes, path: str) -> str:
    """The text of ``raw`` (gzip when it starts with the gzip magic), UTF-8 with or without a BOM."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: a damaged gzip file ({e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text; expected a CSV with columns "
                         f"{', '.join(COLUMNS)}") from None


def parse_trace(text: str, name: str = "trace") -> Trace:
    """A :class:`Trace` from CSV text in the Azure format (a header with :data:`COLUMNS`).

    Errors name the line (the header is line 1): a missing column, a token count that is not
    an integer >= 1, an unparsable or out-of-order timestamp.
    """
    instance_of("text", text, str, "the CSV text (a str; read_trace(path) reads a file)")
    instance_of("name", name, str, "a str naming where the text came from")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise ValueError(f"{name}: empty file; expected a CSV header with {', '.join(COLUMNS)}")
    header = [h.strip() for h in header]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{name}: the CSV header {header} has no {', '.join(missing)} column "
                         f"(the Azure trace format: {', '.join(COLUMNS)})")
    cols = [header.index(c) for c in COLUMNS]
    stamps, prompt, gen, lines = [], [], [], []
    for row in reader:
        line = reader.line_num
        if not row or not "".join(row).strip():
            continue
        if len(row) <= max(cols):
            raise ValueError(f"{name}, line {line}: {len(row)} fields, the header has {len(header)}")
        ts, p, g = (row[c].strip() for c in cols)
        prompt.append(_token_count(name, line, "ContextTokens", p))
        gen.append(_token_count(name, line, "GeneratedTokens", g))
        stamps.append(ts)
        lines.append(line)
    if not stamps:
        raise ValueError(f"{name}: a header but no requests")
    for s, line in zip(stamps, lines):
        if not s:
            raise ValueError(f"{name}, line {line}: an empty TIMESTAMP")
    arrival, form = _arrival_seconds(name, stamps, lines)
    return Trace(arrival, np.array(prompt, dtype=np.int64), np.array(gen, dtype=np.int64), name=name,
                 timestamps=form)


def _token_count(name: str, line: int, column: str, text: str) -> int:
    """A token count written in ASCII digits (:func:`~packviz.checks.ascii_int`: ``int()`` alone would take
    ``1_000`` and other scripts' digits)."""
    v = ascii_int(text)
    if v is None:
        raise ValueError(f"{name}, line {line}: {column} is {text!r}, not an integer (ASCII digits, e.g. 374)")
    if v < 1:
        raise ValueError(f"{name}, line {line}: {column} is {v}; a token count must be >= 1")
    if v > 2**62:
        raise ValueError(f"{name}, line {line}: {column} is {v}, too large for a token count")
    return v


TIMESTAMP_FORMS = ("ISO 8601", "ISO 8601 with UTC offsets", "epoch seconds")
"""How a trace's TIMESTAMP column can be written (:attr:`Trace.timestamps` says which was read): ISO 8601
without a zone (one clock for every line), ISO 8601 with a zone on every line (``Z``, ``+01:00``:
compared in UTC), or seconds since 1970 (``1700154946.68``; a plain number is always read as
seconds, never as a year). Only differences are used, so any year from 0000 to 9999 works."""

_EPOCH = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]*))?", re.ASCII)
_ISO = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?)?"
                  r"\s*(?:([Zz])|([+-])([0-9]{2})(?::?([0-9]{2}))?)?", re.ASCII)
_NS = 10**9


def _stamp_error(name: str, line: int, stamp: str, why: str) -> ValueError:
    return ValueError(f"{name}, line {line}: TIMESTAMP {stamp!r} {why}")


def _epoch_ns(match) -> int:
    """Nanoseconds since 1970 of an epoch-seconds match (exact: Python integers)."""
    sign, whole, frac = match.groups()
    ns = int(whole) * _NS + int((frac or "")[:9].ljust(9, "0"))
    return -ns if sign == "-" else ns


def _iso_parts(name: str, stamps: list[str], lines: list[int]) -> tuple[list, bool]:
    """The ISO 8601 matches of every stamp and whether they carry a zone; errors name the line."""
    matches = [_ISO.fullmatch(s) for s in stamps]
    for m, s, line in zip(matches, stamps, lines):
        if m is None:
            why = ("is epoch seconds, but other lines are ISO 8601 dates: write every TIMESTAMP one way"
                   if _EPOCH.fullmatch(s) else "is not a date and time (expected ISO 8601, e.g. "
                   "2023-11-16 18:15:46.6805900, optionally with Z or +01:00, or epoch seconds, e.g. 1700154946.68)")
            raise _stamp_error(name, line, s, why)
    zoned = [m.group(6) is not None or m.group(7) is not None for m in matches]
    for z, s, line in zip(zoned, stamps, lines):
        if z != zoned[0]:
            raise _stamp_error(name, line, s, f"{'has' if z else 'has no'} time zone, but line {lines[0]} "
                               f"{'has none' if z else 'has one'}: give every TIMESTAMP a zone (Z, +01:00) or none")
    return matches, zoned[0]


def _iso_ns(name: str, stamps: list[str], lines: list[int]) -> tuple[np.ndarray, np.ndarray, bool]:
    """(whole seconds since 1970 (N,) int64, nanoseconds within the second (N,) int64, zoned) of ISO stamps."""
    matches, zoned = _iso_parts(name, stamps, lines)
    whole = [f"{m.group(1)}T{m.group(2) or '00'}:{m.group(3) or '00'}:{m.group(4) or '00'}" for m in matches]
    try:
        sec = np.array(whole, dtype="datetime64[s]").astype(np.int64)
    except ValueError:
        for w, s, line in zip(whole, stamps, lines):
            try:
                np.datetime64(w, "s")
            except ValueError:
                raise _stamp_error(name, line, s, "is not a valid date and time (a month, day, hour, "
                                   "minute or second out of range)") from None
        raise
    offset = [0 if m.group(7) is None else (1 if m.group(7) == "+" else -1)
              * (int(m.group(8)) * 3600 + int(m.group(9) or 0) * 60) for m in matches]
    frac = [int((m.group(5) or "")[:9].ljust(9, "0")) for m in matches]
    return sec - np.array(offset, dtype=np.int64), np.array(frac, dtype=np.int64), zoned


def _arrival_seconds(name: str, stamps: list[str], lines: list[int]) -> tuple[np.ndarray, str]:
    """(seconds since the first timestamp (N,), the form read: one of :data:`TIMESTAMP_FORMS`);
    errors name the line of a bad or earlier stamp."""
    epoch = [_EPOCH.fullmatch(s) for s in stamps]
    if all(epoch):
        ns = [_epoch_ns(m) for m in epoch]
        rel = [(x - ns[0]) / _NS for x in ns]
        back = next((i for i in range(1, len(ns)) if ns[i] < ns[i - 1]), None)
        form = TIMESTAMP_FORMS[2]
    else:
        sec, frac, zoned = _iso_ns(name, stamps, lines)
        d_sec = sec - sec[0]
        if np.abs(d_sec).max() < 9 * _NS:           # nanoseconds fit int64: exact to the nanosecond
            d_ns = d_sec * _NS + (frac - frac[0])
            rel = d_ns / 1e9
        else:                                       # centuries apart: seconds as floats
            d_ns = d_sec + (frac - frac[0]) / 1e9
            rel = d_ns.astype(np.float64)
        bad = np.flatnonzero(np.diff(d_ns) < 0)
        back = int(bad[0]) + 1 if bad.size else None
        form = TIMESTAMP_FORMS[1] if zoned else TIMESTAMP_FORMS[0]
    if back is not None:
        raise ValueError(f"{name}, line {lines[back]}: TIMESTAMP {stamps[back]} is earlier than the line before; "
                         "the requests must be in arrival order (sort the file by TIMESTAMP)")
    return np.asarray(rel, dtype=np.float64), form


def read_trace(path) -> Trace:
    """A :class:`Trace` from a CSV file in the Azure format (plain or gzip-compressed); ``"-"``: standard input."""
    raw, name = read_input(path, "trace file")
    return parse_trace(_open_text(raw, name), name=name)


@functools.lru_cache(maxsize=1)
def azure_conv() -> Trace:
    """The shipped Azure LLM inference trace 2023 (conversation): 19,366 requests in arrival order."""
    resource = DATA_DIR / AZURE_CONV_FILE
    text = gzip.decompress(resource.read_bytes()).decode("utf-8-sig")
    return parse_trace(text, name="azure-conv-2023")


def request_ids(prompt_tokens, vocab: int, seed: int = 0) -> list[list[int]]:
    """Random token ids, one list per request of its prompt length, drawn from 1 .. vocab - 1 (0 is the pad).

    Random rather than constant: all-zero inputs would run some kernels measurably faster.

    >>> request_ids([3, 1], vocab=100, seed=0)
    [[85, 64, 51], [27]]
    """
    rng = np.random.default_rng(seed)
    return [rng.integers(1, vocab, int(n)).tolist() for n in prompt_tokens]
