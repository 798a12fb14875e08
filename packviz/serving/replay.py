"""A trace replayed against a real server: any OpenAI-compatible endpoint (vLLM, SGLang, TGI, ``transformers serve``).

Each request of a trace is sent at its arrival time (open loop; or at most K in flight: a closed
loop), streaming, to ``/v1/completions`` with a prompt of its P tokens and ``max_tokens`` = its G.
What comes back is recorded as events -- when it was sent, when each chunk that carried a token
arrived, what the server counted -- and :func:`result_from_records` (pure) turns the events into a
:class:`ReplayResult`: a :class:`~packviz.serving.simulator.SimResult` with the server's wall clock,
so :func:`~packviz.serving.metrics.summary`, the serving plots and notebook 07 take a replay as they
take a simulated or an engine run. The async client (:func:`replay`) is the small rest.

Measured as ``vllm bench serve`` measures (``vllm/benchmarks/lib/endpoint_request_func.py``):

* TTFT -- first chunk with a token - the moment the request was sent;
* ITL -- every gap between two chunks that carried a token (a chunk with several tokens is one gap);
* TPOT -- (last token - first token) / (tokens - 1), tokens as the server counted them (``usage``);
* e2e -- last token - sent. ``queue_s`` is unknown over HTTP (NaN).

How the prompt and the output length are made to match the trace depends on what the server takes;
a probe request tries, in order (:data:`DIALECTS`): token ids with ``ignore_eos`` (vLLM, SGLang),
text with ``ignore_eos``, text with ``generation_config`` naming no EOS token (``transformers
serve``, which rejects unknown fields), plain text (EOS cannot be ignored: requests that stop early
are counted). Text prompts are random words of :data:`PROMPT_WORDS` (one token each in common BPE
vocabularies), their count corrected by the probe's ``usage.prompt_tokens`` and checked per request.

Goodput (:func:`goodput`): requests per second whose TTFT ≤ ``SLO_TTFT_P99_S`` and TPOT ≤
``SLO_ITL_P99_S`` (:mod:`~packviz.serving.sweep`'s SLOs, applied per request as DistServe and ``vllm
bench serve --goodput`` do).

>>> import numpy as np
>>> from packviz.trace import Trace
>>> asked = Trace(np.array([0.0, 0.5]), np.array([4, 6]), np.array([3, 2]))
>>> recs = [RequestRecord(0, 0.0, sent_s=0.01, events_s=[0.11, 0.13, 0.16], tokens=3, prompt_tokens=4),
...         RequestRecord(1, 0.5, sent_s=0.5, error="HTTP 400: prompt too long")]
>>> r = result_from_records(asked, recs)
>>> r.first_token_s.tolist(), r.finish_s.tolist(), sorted(r.ledger.itl_samples()[0].round(3).tolist())
([0.11], [0.16], [0.02, 0.03])
>>> r.errors
{'HTTP 400: prompt too long': 1}
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import numpy as np

from ..checks import instance_of, is_integer, mapping, nonnegative_int, positive_float, positive_int, show
from ..trace import Trace
from .costs import CostModel
from .metrics import latencies, summary
from .scheduler import ServeConfig
from .simulator import Ledger, SimResult
from .sweep import SLO_ITL_P99_S, SLO_TTFT_P99_S

DIALECTS = ("token-ids", "ignore-eos", "no-eos-token", "plain")
"""How a request asks for exactly P prompt tokens and G output tokens, most exact first."""

EOS_NOTE = {"token-ids": "ignored (ignore_eos)", "ignore-eos": "ignored (ignore_eos)",
            "no-eos-token": "ignored (generation_config eos_token_id [])",
            "plain": "NOT ignored: the server takes no way to ignore EOS; requests may end early (counted)"}

PROMPT_WORDS = ("the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are",
                "with", "as", "his", "they", "be")
"""Words a text prompt is drawn from: each one token with its leading space in common BPE vocabularies."""

TOKEN_ID_RANGE = (1000, 30000)
"""Prompt token ids are drawn from here: ordinary tokens in the Llama-2/3, Mistral and Qwen vocabularies
(special tokens sit below 1000 or above 30000 in all of them)."""

INSTALL = "pip install 'packviz[replay]' (or: pip install httpx)"

MAX_CONCURRENCY = 100_000
"""The most requests a replay keeps in flight (``concurrency`` / ``--concurrency``): each is an open connection."""

MAX_TIMEOUT_S = 86_400.0
"""The longest wait for a request's next chunk (``timeout_s`` / ``--timeout``): a day."""

URL_EXAMPLE = "e.g. http://127.0.0.1:8000"

NETLOC = re.compile(r"(?:[^@/]*@)?(\[[^\]/]+\]|[^:\[\]/@]+)(?::([^:]*))?", re.ASCII)
"""``[user@]host[:port]`` of a URL: an IPv6 host in brackets; the port read as text, checked after."""


class MalformedChunk(ValueError):
    """A streamed chunk that is not an OpenAI completion chunk: fails its request only."""


@dataclass
class RequestRecord:
    """What the client saw of one request; times in seconds since the replay started (monotonic clock).

    ``events_s``: (E,) arrival of every chunk that carried a token, non-decreasing. ``tokens`` /
    ``prompt_tokens``: the server's ``usage`` counts (``None`` when it sent none). ``error``: one line
    (``None``: the stream ended normally).
    """

    index: int
    scheduled_s: float
    sent_s: float = float("nan")
    events_s: list = field(default_factory=list)
    tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    end_s: float = float("nan")

    @property
    def received(self) -> int:
        """Tokens received: the server's count, else one per chunk."""
        return self.tokens if self.tokens is not None else len(self.events_s)


@dataclass(frozen=True)
class ServerConfig(ServeConfig):
    """The config of a replay: the server's policy is its own (``policy="server"``); ``max_batch`` is
    the client's cap on requests in flight (N for an open loop)."""

    policy: str = "server"

    def __post_init__(self) -> None:
        positive_int("max_batch", self.max_batch)


@dataclass(frozen=True, eq=False)
class ReplayResult(SimResult):
    """A replay against a server: a :class:`SimResult` (``clock="server"``) of the requests that received a
    token (per-request arrays (N,), ``trace`` with the send times, P and G as the server counted them), plus
    ``asked`` (the requests as the trace gave them, (M,) with M ≥ N) and every request's ``records``."""

    asked: Trace | None = None
    records: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)
    url: str = ""
    dialect: str = ""
    interrupted: bool = False
    concurrency: int | None = None


# ---------------------------------------------------------------------- events -> result (pure)
def itl_gaps(records) -> np.ndarray:
    """(S,) every gap between two consecutive token chunks of a request, over the given records."""
    gaps = [np.diff(np.asarray(r.events_s, dtype=np.float64)) for r in records]
    return np.concatenate(gaps) if gaps else np.zeros(0)


def served_part(asked: Trace, records) -> tuple[Trace, list]:
    """The requests that received a token, as served: (send time, P counted by the server, G received)."""
    ok = sorted((r for r in records if r.error is None and r.events_s), key=lambda r: r.index)
    if not records:
        raise ValueError("no request was sent: nothing was measured")
    if not ok:
        lines = Counter(r.error or "no token received" for r in records)
        raise ValueError("no request received a token: " + "; ".join(f"{n} x {e}" for e, n in lines.items()))
    p = [r.prompt_tokens or int(asked.prompt_tokens[r.index]) for r in ok]
    g = [max(1, r.received) for r in ok]
    return Trace(np.array([r.sent_s for r in ok]), np.array(p), np.array(g), name=f"{asked.name} (replayed)"), ok


def result_from_records(asked: Trace, records, *, url: str = "", model: str = "", dialect: str = "",
                        arrivals: str = "trace", rate_scale: float = 1.0, concurrency: int | None = None,
                        seconds: float = 0.0, interrupted: bool = False) -> ReplayResult:
    """The :class:`ReplayResult` of recorded requests: ``asked`` (M requests), ``records`` (one per request sent).

    Failed requests (an ``error``, or no token) are left out of the per-request arrays and counted in
    ``errors`` by their one-line message. ``first_token_s`` / ``finish_s``: first / last token chunk.
    """
    trace, ok = served_part(asked, records)
    n = len(ok)
    first = np.array([r.events_s[0] for r in ok])
    last = np.array([r.events_s[-1] for r in ok])
    ledger = Ledger(busy_s=None)
    ledger.itl_steps = [(float(gap), 1) for gap in itl_gaps(ok)]
    errors = dict(Counter(r.error or "no token received" for r in records if r.error is not None or not r.events_s))
    cfg = ServerConfig(max_batch=concurrency or len(asked))
    cost = CostModel("server", 1.0, 1.0, 0.0, 0.0, 0.0, f"{model} at {url}: measured over HTTP (no datasheet)")
    return ReplayResult(trace, cfg, model, cost, 0, np.full(n, np.nan), first, last, last, np.full(n, -1), ledger,
                        0.0, arrivals, float(rate_scale), float(seconds), clock="server", asked=asked,
                        records=list(records), errors=errors, url=url, dialect=dialect, interrupted=interrupted,
                        concurrency=concurrency)


def goodput(r: SimResult, slo_ttft_s: float = SLO_TTFT_P99_S, slo_tpot_s: float = SLO_ITL_P99_S) -> dict:
    """Requests per second that met both SLOs (TTFT ≤ ``slo_ttft_s`` and TPOT ≤ ``slo_tpot_s``; a request
    with G = 1 has no TPOT and meets that one), over the run's makespan; for any run (simulated, engine,
    replay). ``fraction``: of the requests asked (a replay's failed requests meet nothing).

    >>> import numpy as np
    >>> from packviz.trace import Trace
    >>> t = Trace(np.array([0.0, 1.0]), np.array([4, 4]), np.array([3, 3]))
    >>> recs = [RequestRecord(0, 0.0, 0.0, [1.0, 1.05, 1.1]), RequestRecord(1, 1.0, 1.0, [7.0, 7.5, 8.0])]
    >>> goodput(result_from_records(t, recs))       # the second misses both: TTFT 6 s, TPOT 0.5 s
    {'requests_per_s': 0.125, 'fraction': 0.5, 'good': 1, 'slo': {'ttft_s': 5.0, 'tpot_s': 0.1}}
    """
    instance_of("r", r, SimResult, "a SimResult (what replay, simulate or an engine run returns)")
    slo_ttft_s, slo_tpot_s = positive_float("slo_ttft_s", slo_ttft_s), positive_float("slo_tpot_s", slo_tpot_s)
    lat = latencies(r)
    ttft, tpot = lat["ttft_s"], np.nan_to_num(lat["tpot_s"], nan=0.0)
    good = int(((ttft <= slo_ttft_s) & (tpot <= slo_tpot_s)).sum())
    makespan = float(np.nanmax(r.finish_s) - r.trace.arrival_s.min())
    asked = len(r.asked) if isinstance(r, ReplayResult) and r.asked is not None else len(r.trace)
    return {"requests_per_s": good / makespan if makespan > 0 else None, "fraction": good / asked, "good": good,
            "slo": {"ttft_s": slo_ttft_s, "tpot_s": slo_tpot_s}}


def replay_summary(r: ReplayResult) -> dict:
    """:func:`~packviz.serving.metrics.summary` of a replay, plus ``goodput`` and what only a replay has."""
    instance_of("r", r, ReplayResult, "a ReplayResult (what replay or load_replay returns)")
    out = summary(r)
    asked, recs = r.asked, r.records
    done = [x for x in recs if x.error is None and x.events_s]
    short = [x.index for x in done if x.received < asked.generated_tokens[x.index]]
    off = [x.index for x in done if x.prompt_tokens is not None and x.prompt_tokens != asked.prompt_tokens[x.index]]
    events = sum(len(x.events_s) for x in done)
    late = [x.sent_s - x.scheduled_s for x in recs if np.isfinite(x.sent_s)]
    out["goodput"] = goodput(r)
    out["replay"] = {
        "url": r.url, "dialect": r.dialect, "eos": EOS_NOTE.get(r.dialect, ""),
        "prompts": "token ids" if r.dialect == "token-ids" else "text, token counts from the server's usage"
        if all(x.prompt_tokens is not None for x in done) else "text, token counts approximate (no usage sent)",
        "requests_asked": len(asked), "requests_sent": len(recs), "requests_failed": len(asked) - len(done),
        "errors": dict(r.errors), "ended_early": len(short), "ended_early_requests": short[:20],
        "prompt_count_mismatches": len(off), "generated_tokens_asked": int(asked.generated_tokens.sum()),
        "tokens_per_event": int(r.trace.generated_tokens.sum()) / events if events else None,
        "send_lag_s_max": max(late) if late else None, "concurrency": r.concurrency, "interrupted": r.interrupted,
    }
    return out


def format_replay(s: dict) -> str:
    """A replay's summary in lines: what ran, throughput, latency, goodput, what went wrong."""
    def pct(key, scale=1.0, unit="s"):
        d = s[key]
        return "-" if d["p50"] is None else "  ".join(f"{q} {d[q] * scale:.3g}" for q in ("p50", "p90", "p99")) + f" {unit}"

    rp, gp = s["replay"], s["goodput"]
    lines = [
        f"replay: {rp['requests_sent']:,} of {rp['requests_asked']:,} requests to {rp['url']} ({s['model']}), "
        f"{s['arrivals']} arrivals" + (f" x{s['rate_scale']:g}" if s["arrivals"] == "trace" else "")
        + (f", at most {rp['concurrency']} in flight" if rp["concurrency"] else "")
        + (" -- INTERRUPTED, partial" if rp["interrupted"] else ""),
        f"prompts:    {rp['prompts']}; EOS {rp['eos']}",
        f"completed:  {s['completed']:,} in {s['makespan_s']:,.2f} s; {rp['requests_failed']:,} failed; "
        f"{rp['ended_early']:,} ended before their G tokens",
        f"throughput: {s['output_tokens_per_s']:,.1f} output tokens/s, {s['requests_per_s']:,.2f} requests/s",
        f"TTFT:       {pct('ttft_s')}",
        f"TPOT:       {pct('tpot_s', 1e3, 'ms')}",
        f"ITL:        {pct('itl_s', 1e3, 'ms')} ({rp['tokens_per_event'] or 0:.2f} tokens per streamed chunk)",
        f"e2e:        {pct('e2e_s')}",
        f"goodput:    {gp['requests_per_s'] or 0:,.2f} requests/s ({gp['fraction']:.0%} of the requests) under "
        f"TTFT <= {gp['slo']['ttft_s']:g} s and TPOT <= {gp['slo']['tpot_s'] * 1e3:g} ms",
    ]
    lines += [f"error:      {n:,} x {line}" for line, n in rp["errors"].items()]
    return "\n".join(lines)


# ---------------------------------------------------------------------- requests (pure)
def base_url(url: str) -> str:
    """``http://host:port`` of an OpenAI-compatible server given as that, or with ``/v1`` (a trailing ``/`` dropped);
    a one-line ``ValueError`` for anything else (no scheme, no host, a port outside 1-65535, a space).

    >>> base_url("http://127.0.0.1:8000/v1/")
    'http://127.0.0.1:8000'
    >>> base_url("http://127.0.0.1:99999")
    Traceback (most recent call last):
    ...
    ValueError: --url 'http://127.0.0.1:99999' has port 99999: a port must be 1 to 65535 (e.g. http://127.0.0.1:8000)
    """
    text = str(url).strip().rstrip("/")
    if not text.lower().startswith(("http://", "https://")):
        raise ValueError(f"--url must start with http:// or https:// ({URL_EXAMPLE}), got {show(url)}")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"--url {show(url)} has a space or control character in it; give one address ({URL_EXAMPLE})")
    try:
        parts = urlsplit(text)
    except ValueError as e:
        raise ValueError(f"--url {show(url)} is not a valid URL ({e}); give http://host:port ({URL_EXAMPLE}, "
                         "an IPv6 host in brackets: http://[::1]:8000)") from None
    where = NETLOC.fullmatch(parts.netloc)
    if parts.query or parts.fragment or where is None:
        raise ValueError(f"--url {show(url)} is not http://host:port[/path] ({URL_EXAMPLE}, an IPv6 host in "
                         "brackets: http://[::1]:8000; no ? or #)")
    port = where.group(2)
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"--url {show(url)} has port {port}: a port must be 1 to 65535 ({URL_EXAMPLE})")
    return text.removesuffix("/v1")


def prompt_for(p: int, dialect: str, offset: int = 0, seed=(0,)):
    """A prompt of ``p`` tokens: random ids in :data:`TOKEN_ID_RANGE` (``token-ids``), else ``p - offset``
    random words of :data:`PROMPT_WORDS` (``offset``: tokens the server adds, e.g. a BOS). Random, so that a
    server's prefix cache does not turn the replay into a cache benchmark.

    >>> len(prompt_for(5, "plain", offset=1).split()), len(prompt_for(5, "token-ids"))   # a BOS added: 4 words
    (4, 5)
    """
    rng = np.random.default_rng(list(seed))
    if dialect == "token-ids":
        return rng.integers(*TOKEN_ID_RANGE, int(p)).tolist()
    return " ".join(rng.choice(PROMPT_WORDS, max(1, int(p) - offset)).tolist())


def payload(model: str, prompt, max_tokens: int, dialect: str) -> dict:
    """The JSON body of one streaming ``/v1/completions`` request (greedy; usage asked for in the last chunk).

    >>> payload("m", [5, 6], 4, "token-ids")["ignore_eos"], "ignore_eos" in payload("m", "a b", 4, "plain")
    (True, False)
    """
    body = {"model": model, "prompt": prompt, "max_tokens": int(max_tokens), "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}
    if dialect in ("token-ids", "ignore-eos"):
        body["ignore_eos"] = True
    elif dialect == "no-eos-token":
        body["generation_config"] = json.dumps({"eos_token_id": []})
    return body


def read_chunk(rec: RequestRecord, line: str, now: float) -> bool:
    """Fold one SSE line into ``rec`` (``now``: its arrival); False at ``data: [DONE]``.

    A chunk with choices is a token event unless it is only the end marker (empty text with a
    ``finish_reason``: ``transformers serve`` sends one); ``usage`` gives the server's counts.
    A chunk that is not a completion chunk raises :class:`MalformedChunk` (one line, the chunk shown).
    """
    if not line.startswith("data:"):
        return True                               # an SSE comment (a ping), an event name, a blank line
    data = line[5:].strip()
    if data == "[DONE]":
        return False
    chunk = parse_chunk(data)
    if chunk.get("error"):
        rec.error = "stream error: " + " ".join(str(chunk["error"]).split())[:160]
        return False
    if chunk.get("choices"):
        choice = chunk["choices"][0]
        if choice.get("text") or choice.get("finish_reason") is None:
            rec.events_s.append(now)
        rec.finish_reason = choice.get("finish_reason") or rec.finish_reason
    if chunk.get("usage"):
        rec.tokens, rec.prompt_tokens = chunk["usage"].get("completion_tokens"), chunk["usage"].get("prompt_tokens")
    return True


def parse_chunk(data: str) -> dict:
    """One SSE ``data:`` payload as a completion chunk: a JSON object whose ``choices`` (if any) is a list of
    objects and whose ``usage`` (if any) counts tokens in integers >= 0; else :class:`MalformedChunk`.

    >>> parse_chunk('{"choices": ["x"]}')
    Traceback (most recent call last):
    ...
    packviz.serving.replay.MalformedChunk: malformed stream chunk: {"choices": ["x"]} (expected {"choices": [{"text": ...}]})
    """
    try:
        chunk = json.loads(data)
    except ValueError:
        chunk = None
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    usage = chunk.get("usage") if isinstance(chunk, dict) else None
    counts = (usage.get("completion_tokens"), usage.get("prompt_tokens")) if isinstance(usage, dict) else ()
    if not isinstance(chunk, dict) or not isinstance(choices, (list, type(None))) \
            or not all(isinstance(c, dict) for c in choices or ()) or not isinstance(usage, (dict, type(None))) \
            or not all(n is None or (is_integer(n) and n >= 0) for n in counts):
        shown = " ".join(data.split())
        raise MalformedChunk(f"malformed stream chunk: {shown if len(shown) <= 80 else shown[:77] + '...'} "
                             '(expected {"choices": [{"text": ...}]})')
    return chunk


def http_error_line(status: int, body: bytes) -> str:
    """``HTTP 400: <the server's message>`` on one line."""
    try:
        detail = json.loads(body)
        detail = detail.get("detail") or detail.get("error") or detail.get("message") or detail
    except ValueError:
        detail = body.decode("utf-8", "replace")
    if isinstance(detail, dict):
        detail = detail.get("message") or json.dumps(detail)
    return f"HTTP {status}: " + " ".join(str(detail).split())[:160]


# ---------------------------------------------------------------------- the async client
def import_httpx():
    try:
        import httpx
    except ImportError:
        raise ValueError(f"packviz replay needs an HTTP client: {INSTALL}") from None
    return httpx


async def stream_one(client, url: str, body: dict, rec: RequestRecord, t0: float) -> None:
    """Send one request and record its events into ``rec``; every failure becomes ``rec.error`` (one line)."""
    httpx = import_httpx()
    try:
        async with client.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                rec.error = http_error_line(resp.status_code, await resp.aread())
                return
            async for line in resp.aiter_lines():
                if not read_chunk(rec, line, time.perf_counter() - t0):
                    break
    except httpx.TimeoutException as e:
        rec.error = f"timeout ({type(e).__name__}): no answer within the --timeout"
    except MalformedChunk as e:                        # this request fails; the others go on
        rec.error = str(e)
    except (httpx.HTTPError, httpx.StreamError, ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
        rec.error = f"{type(e).__name__}: " + " ".join(str(e).split())[:160]
    finally:
        rec.end_s = time.perf_counter() - t0


async def served_models(client, base: str) -> list:
    """The model ids ``GET /v1/models`` lists; a one-line ``ValueError`` when the server cannot be reached."""
    httpx = import_httpx()
    try:
        resp = await client.get(f"{base}/v1/models")
    except httpx.HTTPError as e:
        raise ValueError(f"cannot reach {base} ({type(e).__name__}: {' '.join(str(e).split()) or 'no answer'}); "
                         "start the server there or fix --url") from None
    if resp.status_code != 200:
        raise ValueError(f"{base}/v1/models answered {http_error_line(resp.status_code, resp.content)}; "
                         "--url must be an OpenAI-compatible server")
    return model_ids(base, resp.content)


def model_ids(base: str, body: bytes) -> list:
    """The ids in a ``GET /v1/models`` answer, ``{"data": [{"id": ...}, ...]}``; a one-line ``ValueError``
    showing what came back (its first 80 characters) when it is not that.

    >>> model_ids("http://h:1", b'{"object": "list", "data": [{"id": "m"}]}')
    ['m']
    >>> model_ids("http://h:1", b"<html><body>Welcome</body></html>")
    Traceback (most recent call last):
    ...
    ValueError: http://h:1 did not answer like an OpenAI-compatible server: GET /v1/models returned '<html><body>Welcome</body></html>', not {"data": [{"id": ...}]}; check --url (an OpenAI-compatible server's address, e.g. http://127.0.0.1:8000)
    """
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    models = answer.get("data", []) if isinstance(answer, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        text = " ".join(body.decode("utf-8", "replace").split())
        raise ValueError(f"{base} did not answer like an OpenAI-compatible server: GET /v1/models returned "
                         f"{text[:80]!r}{'...' if len(text) > 80 else ''}, not {{\"data\": [{{\"id\": ...}}]}}; "
                         "check --url (an OpenAI-compatible server's address, e.g. http://127.0.0.1:8000)")
    return [m.get("id") for m in models]


async def probe(client, base: str, model: str) -> tuple[str, int]:
    """``(dialect, offset)``: the first of :data:`DIALECTS` the server accepts, and how many tokens it adds
    to a text prompt (from its ``usage``). Also checks ``model`` is served and warms the server up."""
    ids = await served_models(client, base)
    last = ""
    for dialect in DIALECTS:
        rec = RequestRecord(-1, 0.0)
        await stream_one(client, f"{base}/v1/completions", payload(model, prompt_for(8, dialect), 2, dialect), rec, 0.0)
        if rec.error is None:
            offset = rec.prompt_tokens - 8 if dialect != "token-ids" and rec.prompt_tokens else 0
            return dialect, offset
        last = rec.error
        if not last.startswith(("HTTP 400", "HTTP 422")):
            break
    if ids and model not in ids:                  # a server may load an unlisted model on demand: asked first
        raise ValueError(f"--model {model!r} is not served at {base}; it serves {', '.join(map(str, ids))}")
    raise ValueError(f"{base}/v1/completions refused a short streaming request: {last}")


async def send_all(client, url: str, bodies: list, arrival_s, records: list, concurrency: int | None, bar) -> None:
    """Send ``bodies[i]`` at ``arrival_s[i]`` seconds (open loop), at most ``concurrency`` in flight if given;
    one task per request, so a slow or failed one never holds the others. Appends a record per request sent."""
    t0 = time.perf_counter()
    slots = asyncio.Semaphore(concurrency) if concurrency else None

    async def one(rec, body):
        try:
            await stream_one(client, url, body, rec, t0)
        except asyncio.CancelledError:
            rec.error = rec.error or "interrupted (Ctrl-C) before its last token"
            raise
        except Exception as e:  # noqa: BLE001 -- one request's failure must not end the replay and lose the rest
            rec.error = rec.error or f"client error ({type(e).__name__}: {' '.join(str(e).split())[:160]})"
        finally:
            if slots:
                slots.release()
            bar.update(1)

    tasks = []
    for i, (a, body) in enumerate(zip(arrival_s, bodies)):
        delay = float(a) - (time.perf_counter() - t0)
        if delay > 0:
            await asyncio.sleep(delay)
        if slots:
            await slots.acquire()
        rec = RequestRecord(i, float(a), sent_s=time.perf_counter() - t0)
        records.append(rec)
        tasks.append(asyncio.create_task(one(rec, body)))
    await asyncio.gather(*tasks)


def replay(url: str, model: str, trace: Trace, *, arrivals: str = "trace", rate_scale: float = 1.0,
           concurrency: int | None = None, timeout_s: float = 300.0, seed: int = 0,
           progress: bool = True) -> ReplayResult:
    """Replay ``trace``'s requests against the server at ``url`` serving ``model``; measure every token.

    ``arrivals`` / ``rate_scale``: as :func:`~packviz.serving.simulate` (``"offline"``: all at once).
    ``rate_scale`` must stay 1 with ``offline``. ``concurrency``: at most this many requests in flight, 1 to
    :data:`MAX_CONCURRENCY` (a closed loop with ``offline``). ``timeout_s``: the longest wait for the next
    chunk, > 0 and at most :data:`MAX_TIMEOUT_S`. Ctrl-C stops sending and returns what was measured
    (``interrupted=True``; the requests in flight counted as failed); before any token arrived, it raises
    ``KeyboardInterrupt``. One request's failure (an HTTP error, a timeout, a malformed chunk) is that
    request's ``error``, counted; it never ends the replay.

    Pitfalls
    --------
    * The client must not queue: httpx pools 100 connections by default, and a request waiting for a
      connection would show its wait as TTFT. The pool here is unbounded.
    * A server that cannot ignore EOS (dialect ``plain``) ends requests early; a random model does so
      often. ``summary["replay"]["ended_early"]`` counts them: compare against the prediction only when 0.
    """
    from .simulator import served_trace

    httpx = import_httpx()
    base, served = checked_target(httpx, url, model), served_trace(trace, arrivals, rate_scale)  # offline: scale 1
    concurrency = None if concurrency is None else positive_int("concurrency", concurrency, MAX_CONCURRENCY)
    timeout_s, seed = positive_float("timeout_s", timeout_s, MAX_TIMEOUT_S), nonnegative_int("seed", seed)
    records, t0 = [], time.perf_counter()
    state = {"dialect": "", "interrupted": False}

    async def main():
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = httpx.Timeout(timeout_s, connect=10.0, pool=None)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            state["dialect"], offset = await probe(client, base, model)
            bodies = [payload(model, prompt_for(p, state["dialect"], offset, (seed, i)), g, state["dialect"])
                      for i, (p, g) in enumerate(zip(served.prompt_tokens, served.generated_tokens))]
            with progress_bar(len(served), progress) as bar:
                await send_all(client, f"{base}/v1/completions", bodies, served.arrival_s, records, concurrency, bar)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        state["interrupted"] = True
        if not any(r.error is None and r.events_s for r in records):
            raise                                 # nothing measured: Ctrl-C is Ctrl-C
    return result_from_records(served, records, url=base, model=model, dialect=state["dialect"], arrivals=arrivals,
                               rate_scale=rate_scale, concurrency=concurrency, seconds=time.perf_counter() - t0,
                               interrupted=state["interrupted"])


def checked_target(httpx, url: str, model: str) -> str:
    """The server's base URL (:func:`base_url`), also as httpx reads it; ``model`` a non-empty name."""
    base = base_url(url)
    try:
        httpx.URL(base + "/v1/models")
    except (httpx.InvalidURL, ValueError) as e:
        raise ValueError(f"--url {show(url)} is not a valid URL ({' '.join(str(e).split())}); "
                         f"give http://host:port ({URL_EXAMPLE})") from None
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"--model must be the name of a model the server serves (GET /v1/models), got {show(model)}")
    return base


def progress_bar(total: int, show: bool):
    """A tqdm bar on stderr counting finished requests (a silent one when ``show`` is false)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="req", desc="replay", disable=not show, leave=False)


# ---------------------------------------------------------------------- recorded replays
def to_json(r: ReplayResult, **meta) -> dict:
    """A replay as JSON: ``meta`` (label, command, commit, versions), the requests asked, every record, the summary."""
    instance_of("r", r, ReplayResult, "a ReplayResult (what replay or load_replay returns)")
    a = r.asked
    return {**meta, "kind": "packviz replay",
            "asked": {"name": a.name, "arrival_s": a.arrival_s.tolist(), "prompt_tokens": a.prompt_tokens.tolist(),
                      "generated_tokens": a.generated_tokens.tolist()},
            "records": [asdict(x) for x in r.records], "summary": replay_summary(r)}


def from_json(d: dict) -> ReplayResult:
    """The :class:`ReplayResult` of :func:`to_json`'s dict, rebuilt from its records."""
    mapping("d", d, ("asked", "records", "summary"), "a dict as to_json writes it (a recorded replay.json)")
    a, s = d["asked"], d["summary"]
    asked = Trace(np.array(a["arrival_s"]), np.array(a["prompt_tokens"]), np.array(a["generated_tokens"]), a["name"])
    records = [RequestRecord(**x) for x in d["records"]]
    rp = s["replay"]
    return result_from_records(asked, records, url=rp["url"], model=s["model"], dialect=rp["dialect"],
                               arrivals=s["arrivals"], rate_scale=s["rate_scale"], concurrency=rp["concurrency"],
                               seconds=s["seconds"], interrupted=rp["interrupted"])


def load_replay(path) -> ReplayResult:
    """A recorded replay (``replay.json``) as a :class:`ReplayResult`."""
    import pathlib

    return from_json(json.loads(pathlib.Path(path).read_text()))
