"""A serving run as tables over steps: what each request did, the KV it held, the rows it occupied.

numpy only. The scheduler (:mod:`packviz.serving.scheduler`) emits one
:class:`~packviz.serving.scheduler.StepPlan` per step; a simulated run stepped one plan at a
time and every engine run keep them (``result.plans``). This module turns them into arrays a
picture (:mod:`packviz.plot_serving`) or a printout reads:

* :func:`step_table` -- requests × steps (N, S): waiting, prefill (with its token count),
  decode, idle decode (a finished request's static slot), preempted;
* :func:`pages_held` -- the KV pages the scheduler counts for each request after each step;
* :func:`kv_rows` -- the engine's physical cache, rows × steps (C, S): which request owns each row;
* :func:`format_stream` -- one step's ragged token stream (``runner.step_arrays``) as a table.

Three requests, two running at most (the scheduler's own example)::

    step  0  1 2
    r0   P2  D D        P2: a prefill of 2 tokens; D: a decode (one token)
    r1   P3             r1 needs one token: its prefill yields it, and it leaves
    r2    . P1 D        .: waiting (arrived, not scheduled)

>>> import numpy as np
>>> from packviz.trace import Trace
>>> from packviz.serving.scheduler import ServeConfig, make_scheduler
>>> tr = Trace(np.zeros(3), np.array([2, 3, 1]), np.array([3, 1, 2]))
>>> s = make_scheduler(tr, ServeConfig("continuous", max_batch=2, page_size=2), kv_budget_tokens=64)
>>> plans = []
>>> while not s.done:
...     s.arrive()
...     plans.append(s.plan())
...     s.commit(plans[-1], 1.0)
>>> print(format_step_table(step_table(plans)))
step  0  1 2
r0   P2  D D
r1   P3
r2    . P1 D
>>> pages = pages_held(plans, page_size=2)           # ceil(tokens held / 2) after each step
>>> pages.tolist()
[[1, 2, 2], [2, 0, 0], [0, 1, 1]]
>>> (pages.sum(axis=0) * 2).tolist() == [p.kv_reserved for p in plans]   # what the scheduler budgeted
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import instance_of, items
from .scheduler import StepPlan

NONE, WAITING, PREFILL, DECODE, IDLE, PREEMPTED = range(6)
STATES = ("none", "waiting", "prefill", "decode", "idle", "preempted")
"""A request's state in one step (:func:`step_table`), by code: not arrived or already gone; arrived but not
in the step (queued, preempted earlier, or a chunked prefill the token budget left out); a prefill piece;
a decode; an idle decode (its static slot runs, the token is thrown away); evicted before the step."""
SYMBOLS = {NONE: "", WAITING: ".", DECODE: "D", IDLE: "_", PREEMPTED: "X"}
"""How :func:`format_step_table` prints each state; a prefill prints as ``P<tokens>`` (``+<pad>`` if padded)."""


@dataclass(frozen=True)
class StepTable:
    """What every request did in every step. Arrays of shape (N, S): N requests, S steps.

    ``state``: a code of :data:`STATES`. ``tokens``: tokens the request put in the step's stream
    (a prefill piece's real tokens, 1 for a decode or an idle decode, else 0). ``pad``: pad tokens
    after a piece (a padded static prefill).
    """

    state: np.ndarray
    tokens: np.ndarray
    pad: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.state.shape

    def count(self, state: int) -> int:
        """How many (request, step) cells are in ``state``."""
        return int((self.state == state).sum())


PLANS = "a list of StepPlan (a run's .plans: simulate(..., fast_forward=False).plans)"


def step_plans(plans) -> list:
    """``plans`` as a list of :class:`~packviz.serving.scheduler.StepPlan`; else ``TypeError`` naming the
    first entry that is not one.

    >>> step_plans("x")
    Traceback (most recent call last):
    ...
    TypeError: plans must be a list of StepPlan (a run's .plans: simulate(..., fast_forward=False).plans); got str 'x'
    """
    out = items("plans", plans, PLANS)
    for i, plan in enumerate(out):
        instance_of(f"plans[{i}]", plan, StepPlan, "a StepPlan (one step of a run's .plans)")
    return out


def num_requests(plans) -> int:
    """1 + the largest request number any plan names (0 for no plans)."""
    plans = step_plans(plans)
    ids = [r for p in plans for r in (*p.decodes, *(x.request for x in p.prefills), *p.preempted, *p.admitted)]
    return max(ids, default=-1) + 1


def step_table(plans, n: int | None = None, arrival_steps=None) -> StepTable:
    """The (N, S) table of ``plans`` (a run's ``plans``, one per step, in order).

    ``n``: the number of requests (default: the largest request named + 1). ``arrival_steps``
    (N,): the first step at which each request could run (default: all at step 0, an offline
    run); before it a request is ``none``. A request is ``none`` again after the step that
    released it (finished, or its static batch ended).
    """
    plans = step_plans(plans)
    n = num_requests(plans) if n is None else int(n)
    s = len(plans)
    state = np.zeros((n, s), dtype=np.int8)
    tokens = np.zeros((n, s), dtype=np.int64)
    pad = np.zeros((n, s), dtype=np.int64)
    arrive = np.zeros(n, dtype=np.int64) if arrival_steps is None else np.asarray(arrival_steps, dtype=np.int64)
    gone = np.zeros(n, dtype=bool)
    for j, plan in enumerate(plans):
        state[(arrive <= j) & ~gone, j] = WAITING
        for r in plan.preempted:
            state[r, j] = PREEMPTED
        idle = set(plan.idle)
        for r in plan.decodes:
            state[r, j], tokens[r, j] = (IDLE if r in idle else DECODE), 1
        for piece in plan.prefills:
            state[piece.request, j] = PREFILL
            tokens[piece.request, j] += piece.tokens
            pad[piece.request, j] += piece.pad
        gone[list(plan.released)] = True
    return StepTable(state, tokens, pad)


def format_step_table(table: StepTable, steps=None, legend: bool = False) -> str:
    """The table as text, one line per request (symbols: :data:`SYMBOLS`). ``steps``: a range of steps to print."""
    instance_of("table", table, StepTable, "a StepTable (what step_table(plans) returns)")
    cols = range(table.shape[1]) if steps is None else steps

    def cell(r: int, j: int) -> str:
        code = int(table.state[r, j])
        if code != PREFILL:
            return SYMBOLS[code]
        return f"P{table.tokens[r, j]}" + (f"+{table.pad[r, j]}" if table.pad[r, j] else "")

    cells = [[cell(r, j) for j in cols] for r in range(table.shape[0])]
    widths = [max([len(str(j))] + [len(row[k]) for row in cells]) for k, j in enumerate(cols)]
    label = max(4, len(f"r{table.shape[0] - 1}"))
    lines = ["step".ljust(label) + " " + " ".join(str(j).rjust(w) for j, w in zip(cols, widths))]
    lines += [f"r{r}".ljust(label) + " " + " ".join(c.rjust(w) for c, w in zip(row, widths))
              for r, row in enumerate(cells)]
    if legend:
        lines.append("P<n>: prefill of n tokens (+pad)  D: decode  _: idle decode (slot held)  "
                     "X: preempted  .: waiting")
    return "\n".join(line.rstrip() for line in lines)


def pages_held(plans, page_size: int, n: int | None = None) -> np.ndarray:
    """KV pages (N, S) each request holds after each step: ceil(tokens written / ``page_size``).

    A decode over context c holds c + 1 tokens after its step; a piece ``done + tokens`` (pads
    included); a request not in the step keeps what it held; a preempted one holds nothing
    from its preemption on; a released one is counted in its last step and not after. For
    ``continuous`` and ``chunked`` the column sums times ``page_size`` are the plans'
    ``kv_reserved`` (the doctest of the module); the static policies reserve whole slots
    instead (``kv_reserved``), of which these pages are the part written.
    """
    plans = step_plans(plans)
    n = num_requests(plans) if n is None else int(n)
    held = np.zeros(n, dtype=np.int64)
    out = np.zeros((n, len(plans)), dtype=np.int64)
    for j, plan in enumerate(plans):
        held[list(plan.preempted)] = 0
        for r, c in zip(plan.decodes, plan.contexts):
            held[r] = c + 1
        for piece in plan.prefills:
            held[piece.request] = piece.done + piece.tokens + piece.pad
        out[:, j] = -(-held // page_size)
        held[list(plan.released)] = 0
    return out


def kv_rows(kv_regions, capacity: int) -> np.ndarray:
    """The physical cache over steps, (C, S): the request owning each of its ``capacity`` rows, -1 if free.

    ``kv_regions``: an engine run's per-step ``{request: (start, length)}`` (``EngineResult.kv_regions``).

    >>> kv_rows([{0: (0, 2)}, {0: (0, 2), 1: (2, 1)}, {1: (2, 1)}], 4).tolist()
    [[0, 0, -1], [0, 0, -1], [-1, 1, 1], [-1, -1, -1]]
    """
    out = np.full((int(capacity), len(kv_regions)), -1, dtype=np.int64)
    for j, regions in enumerate(kv_regions):
        for r, (start, length) in regions.items():
            out[start:start + length, j] = r
    return out


def stream_table(arrays) -> dict:
    """Per token of one step's stream (T,): its request, input id, position and cache row (``slot_mapping``).

    ``arrays``: :func:`packviz.serving.engine.runner.step_arrays` of a plan (numpy arrays, and
    ``host.requests``: the request of each of the N sequences).
    """
    cu = np.asarray(arrays["cu_seqlens_q"], dtype=np.int64)
    requests = np.repeat(np.asarray(arrays["host"].requests, dtype=np.int64), np.diff(cu))
    return {"request": requests, "input_ids": np.asarray(arrays["input_ids"]),
            "positions": np.asarray(arrays["positions"]), "slot_mapping": np.asarray(arrays["slot_mapping"])}


def format_stream(arrays) -> str:
    """One step's ragged stream as text: a column per token, then the per-sequence arrays.

    >>> from types import SimpleNamespace
    >>> a = {"input_ids": np.array([7, 3, 4, 5]), "positions": np.array([5, 0, 1, 2]),
    ...      "slot_mapping": np.array([5, 40, 41, 42]), "cu_seqlens_q": np.array([0, 1, 4]),
    ...      "k_starts": np.array([0, 40, 99]), "seqused_k": np.array([6, 3]),
    ...      "host": SimpleNamespace(requests=[0, 2])}
    >>> print(format_stream(a))
    token         0  1  2  3
    request      r0 r2 r2 r2
    input_ids     7  3  4  5
    position_ids  5  0  1  2
    slot_mapping  5 40 41 42
    cu_seqlens_q  [0, 1, 4]
    k_starts      [0, 40, 99]   (the last: the spare row)
    seqused_k     [6, 3]
    """
    t = stream_table(arrays)
    rows = [("token", list(range(len(t["request"])))), ("request", [f"r{r}" for r in t["request"]]),
            ("input_ids", t["input_ids"].tolist()), ("position_ids", t["positions"].tolist()),
            ("slot_mapping", t["slot_mapping"].tolist())]
    width = max(len(str(v)) for _, values in rows for v in values)
    lines = [f"{name:<13}" + " ".join(str(v).rjust(width) for v in values) for name, values in rows]
    lines += [f"{'cu_seqlens_q':<13} {np.asarray(arrays['cu_seqlens_q']).tolist()}",
              f"{'k_starts':<13} {np.asarray(arrays['k_starts']).tolist()}   (the last: the spare row)",
              f"{'seqused_k':<13} {np.asarray(arrays['seqused_k']).tolist()}"]
    return "\n".join(lines)
