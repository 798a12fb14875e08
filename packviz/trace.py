"""The real request trace: arrival times, prompt tokens and generated tokens, in arrival order.

numpy only. The package ships the **Azure LLM inference trace 2023, conversation service**
(19,366 requests over 58 minutes; CC BY 4.0, Patel et al., "Splitwise", ISCA 2024; see
``packviz/data/README.md``), gzip-compressed and otherwise unchanged. :func:`azure_conv`
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
import importlib.resources
import io
import pathlib
import sys
from dataclasses import dataclass

import numpy as np

from .checks import is_integer, nonnegative_int, positive_int, show

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
"""The Azure trace format's columns: arrival time, prompt tokens, generated tokens."""

AZURE_CONV_FILE = "azure_llm_inference_2023_conv.csv.gz"
"""The shipped trace, under ``packviz/data/`` (read with :mod:`importlib.resources`)."""

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
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    generated_tokens: np.ndarray
    name: str = "trace"

    def __post_init__(self) -> None:
        a = np.asarray(self.arrival_s, dtype=np.float64)
        p = np.asarray(self.prompt_tokens)
        g = np.asarray(self.generated_tokens)
        if not (a.ndim == p.ndim == g.ndim == 1 and len(a) == len(p) == len(g)):
            raise ValueError(f"arrival_s, prompt_tokens and generated_tokens must be 1-D of one length, "
                             f"got shapes {a.shape}, {p.shape}, {g.shape}")
        if len(a) == 0:
            raise ValueError("a trace needs at least one request")
        for label, x in (("prompt_tokens", p), ("generated_tokens", g)):
            if x.dtype.kind not in "iu" or (x < 1).any():
                i = int(np.flatnonzero(~(x >= 1))[0]) if x.dtype.kind in "iuf" else 0
                raise ValueError(f"{label}[{i}] is {show(x[i])}: token counts must be integers >= 1")
        if not np.isfinite(a).all() or (np.diff(a) < 0).any():
            raise ValueError("arrival_s must be finite and non-decreasing (requests in arrival order)")
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
                     self.generated_tokens[sl], name=f"{self.name}[{start}:{start + n}]")

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
                     name=f"{self.name} x{rate_scale:g} rate")

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
    arrival = _arrival_seconds(name, stamps, lines)
    return Trace(arrival, np.array(prompt, dtype=np.int64), np.array(gen, dtype=np.int64), name=name)


def _token_count(name: str, line: int, column: str, text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise ValueError(f"{name}, line {line}: {column} is {text!r}, not an integer") from None
    if v < 1:
        raise ValueError(f"{name}, line {line}: {column} is {v}; a token count must be >= 1")
    if v > 2**62:
        raise ValueError(f"{name}, line {line}: {column} is {v}, too large for a token count")
    return v


def _arrival_seconds(name: str, stamps: list[str], lines: list[int]) -> np.ndarray:
    """Seconds since the first timestamp, shape (N,); errors name the line of a bad or earlier stamp."""
    try:
        t = np.array(stamps, dtype="datetime64[ns]")
    except ValueError:
        for s, line in zip(stamps, lines):
            try:
                np.datetime64(s, "ns")
            except ValueError:
                raise ValueError(f"{name}, line {line}: TIMESTAMP {s!r} is not a date and time "
                                 "(expected e.g. 2023-11-16 18:15:46.6805900)") from None
        raise
    if np.isnat(t).any():
        line = lines[int(np.flatnonzero(np.isnat(t))[0])]
        raise ValueError(f"{name}, line {line}: an empty TIMESTAMP")
    back = np.flatnonzero(np.diff(t) < np.timedelta64(0, "ns"))
    if back.size:
        i = int(back[0]) + 1
        raise ValueError(f"{name}, line {lines[i]}: TIMESTAMP {stamps[i]} is earlier than the line before; "
                         "the requests must be in arrival order (sort the file by TIMESTAMP)")
    return (t - t[0]).astype(np.int64) / 1e9


def read_trace(path) -> Trace:
    """A :class:`Trace` from a CSV file in the Azure format (plain or gzip-compressed); ``"-"``: standard input."""
    raw, name = read_input(path, "trace file")
    return parse_trace(_open_text(raw, name), name=name)


@functools.lru_cache(maxsize=1)
def azure_conv() -> Trace:
    """The shipped Azure LLM inference trace 2023 (conversation): 19,366 requests in arrival order."""
    resource = importlib.resources.files("packviz") / "data" / AZURE_CONV_FILE
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
