"""What one optimizer step holds, counted in tokens, and how its loss weighs each token. numpy only.

The torch side (:mod:`packviz.training`) proves on a real model what this module counts.

**Targets.** A causal LM learns, at every token, the *next* token. A sequence of n tokens
therefore has n - 1 targets: its first token is predicted by nothing inside the sequence
(in a packed row, by the end of the previous sequence, which must not count; labels -100)::

    sequence        a0 a1 a2 a3          4 tokens
    targets         a1 a2 a3             3 = n - 1 (a3 predicts nothing)

**Loss weights.** The loss of a step is a weighted sum of per-target cross-entropies.
With the *token mean* (every target weighs 1 / all targets of the step) packing changes
nothing: the same targets, the same weights, whatever the rows. A *per-sequence mean*
(each sequence's mean, then the mean over sequences) gives each sequence the same total
weight, 1 / N, however long it is:

    >>> lengths = [50, 4000]
    >>> example_weights(lengths, "token").round(4).tolist()      # share of the step's loss
    [0.0121, 0.9879]
    >>> example_weights(lengths, "sequence").round(4).tolist()
    [0.5, 0.5]
    >>> w = token_weights(lengths, "sequence")                   # one target token of each
    >>> round(float(w[0] / w[1]), 1)                             # 3,999 / 49
    81.6

**Gradient accumulation.** A step of K micro-batches holding n_k targets each must divide
the summed loss by N = sum(n_k), the targets of the *whole step* (transformers'
``num_items_in_batch``, PR #34191; torchtune PR #1875). Dividing each micro-batch by its
own n_k and then by K weighs a target by 1 / (K n_k): right only when every n_k is equal:

    >>> accumulation_weights([300, 100], "step").tolist()
    [0.0025, 0.0025]
    >>> accumulation_weights([300, 100], "micro_batch").round(6).tolist()
    [0.001667, 0.005]

**Tokens per step.** A step of B padded sequences holds as many tokens as those B
happen to have; a step of R packed rows of C slots holds about R·C, whatever the lengths.
:func:`step_tokens` counts them per step for any :class:`~packviz.layout.Layout`.
"""

from __future__ import annotations

import numpy as np

from .checks import int_array, items, mapping, one_of, positive_int, show
from .layout import Layout, as_layout
from .packing import validate_lengths

REDUCTIONS = ("token", "sequence")
"""Loss reductions over a step: ``"token"`` (mean over all targets) or ``"sequence"`` (mean of sequence means)."""

NORMALIZATIONS = ("step", "micro_batch")
"""Gradient-accumulation normalisations: by the step's targets (right) or per micro-batch (the old bug)."""


# ---------------------------------------------------------------------- loss weights
def targets_per_sequence(lengths) -> np.ndarray:
    """Next-token targets of each sequence, n - 1, shape (N,). Every length must be >= 2.

    >>> targets_per_sequence([4, 3, 5]).tolist()
    [3, 2, 4]
    """
    n = validate_lengths(lengths)
    if (n < 2).any():
        i = int(np.flatnonzero(n < 2)[0])
        raise ValueError(f"lengths[{i}] is 1: a one-token sequence has no next-token target; "
                         "drop it or use sequences of >= 2 tokens")
    return n - 1


def token_weights(lengths, reduction: str = "token") -> np.ndarray:
    """Weight of ONE target token of each sequence in the step's loss, shape (N,).

    ``"token"``: 1 / sum(n_j - 1) for every token. ``"sequence"``: 1 / (N · (n_i - 1)): the
    tokens of a short sequence weigh more. The weights of all targets sum to 1 either way.
    """
    one_of("reduction", reduction, REDUCTIONS)
    t = targets_per_sequence(lengths).astype(np.float64)
    if reduction == "token":
        return np.full(len(t), 1.0 / t.sum())
    return 1.0 / (len(t) * t)


def example_weights(lengths, reduction: str = "token") -> np.ndarray:
    """Each sequence's share of the step's loss (its targets × their weight), shape (N,); sums to 1."""
    return token_weights(lengths, reduction) * targets_per_sequence(lengths)


def accumulation_weights(targets_per_micro_batch, normalize: str = "step") -> np.ndarray:
    """Weight of one target token in each of K micro-batches of one optimizer step, shape (K,).

    ``"step"``: 1 / N with N = sum(n_k) (``num_items_in_batch``): the full-batch token mean.
    ``"micro_batch"``: 1 / (K · n_k): each micro-batch's own mean, divided by K.
    """
    one_of("normalize", normalize, NORMALIZATIONS)
    n = int_array("targets_per_micro_batch", targets_per_micro_batch).astype(np.float64)
    if normalize == "step":
        return np.full(len(n), 1.0 / n.sum())
    return 1.0 / (len(n) * n)


def scale_lengths(lengths, divisor: int, minimum: int = 2) -> np.ndarray:
    """``round(lengths / divisor)``, at least ``minimum``, shape (N,): real length ratios at CPU sizes.

    >>> scale_lengths([50, 4000, 1020], 16).tolist()
    [3, 250, 64]
    """
    n = validate_lengths(lengths)
    divisor = positive_int("divisor", divisor)
    minimum = positive_int("minimum", minimum, maximum=2**63 - 1)
    return np.maximum(minimum, np.rint(n / divisor).astype(np.int64))


# ---------------------------------------------------------------------- tokens per step
def step_tokens(layout: Layout, rows_per_step: int | None = None) -> dict:
    """What each optimizer step of ``layout`` holds, one entry per step, arrays of shape (S,).

    A step is ``rows_per_step`` consecutive rows (default: a padded layout's batch size B,
    a packed layout's 1 row). Keys: ``tokens`` (real tokens), ``targets`` (tokens minus
    one per segment), ``sequences`` (segments), ``slots`` (real + pad: what the step
    computes). The last step may hold fewer rows.
    """
    layout = as_layout("layout", layout)
    if rows_per_step is None:
        rows_per_step = layout.batch_size if layout.kind == "padded" and layout.batch_size else 1
    rows_per_step = min(positive_int("rows_per_step", rows_per_step), max(layout.num_rows, 1))  # more: one step
    first = np.arange(0, layout.num_rows, rows_per_step)
    segs = np.bincount(layout.seg_row, minlength=layout.num_rows)
    tokens = np.add.reduceat(layout.row_real_tokens(), first)
    sequences = np.add.reduceat(segs, first)
    return {"tokens": tokens, "targets": tokens - sequences, "sequences": sequences,
            "slots": np.add.reduceat(layout.widths, first)}


def spread(x) -> dict:
    """Mean, standard deviation, coefficient of variation (std / mean), min, p5, p50, p95, max of ``x`` (N,)."""
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"spread needs a 1-D array of numbers, got {show(x)}") from None
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"spread needs a non-empty 1-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        i = int(np.flatnonzero(~np.isfinite(x))[0])
        raise ValueError(f"x[{i}] is {x[i]}: spread needs finite numbers")
    mean = float(x.mean())
    p5, p50, p95 = (float(v) for v in np.percentile(x, [5, 50, 95]))
    return {"mean": mean, "std": float(x.std()), "cv": float(x.std()) / mean if mean else float("nan"),
            "min": float(x.min()), "p5": p5, "p50": p50, "p95": p95, "max": float(x.max())}


def step_table(layouts: dict, rows_per_step: dict | None = None) -> list[dict]:
    """Tokens per optimizer step of several layouts (``{label: Layout}``): one JSON-ready dict each.

    Keys: ``label``, ``steps``, ``tokens`` and ``sequences`` (:func:`spread` of each),
    ``utilization`` (real tokens / slots), ``per_token_lr_swing`` (p95 / p5 of tokens per
    step: with a token-mean loss every step moves the weights about as far, so one token's
    share of an update is lr / tokens; it swings by this factor between a fullish and an
    emptyish step).
    """
    layouts = mapping("layouts", layouts, what="a dict {label: Layout}")
    rows_per_step = {} if rows_per_step is None else mapping("rows_per_step", rows_per_step, what="a dict {label: rows}")
    out = []
    for label, lay in layouts.items():
        lay = as_layout(f"layouts[{label!r}]", lay)
        if not lay.real_tokens:
            raise ValueError(f"layouts[{label!r}] holds no tokens: there is no step to count; pack some lengths")
        st = step_tokens(lay, rows_per_step.get(label))
        tok = spread(st["tokens"])
        swing = tok["p95"] / tok["p5"] if tok["p5"] else float("inf")  # some steps hold no token at all
        out.append({"label": label, "steps": int(len(st["tokens"])), "tokens": tok,
                    "sequences": spread(st["sequences"]), "utilization": lay.utilization,
                    "per_token_lr_swing": swing})
    return out


def format_step_table(rows: list[dict]) -> str:
    """:func:`step_table` as aligned text."""
    head = (f"{'layout':<26}{'steps':>7}{'tokens/step':>13}{'std':>8}{'CV':>7}{'p5':>8}{'p95':>8}"
            f"{'seqs/step':>11}{'util.':>7}{'lr swing':>10}")
    keys = ("label", "steps", "tokens", "sequences", "utilization", "per_token_lr_swing")
    rows = [mapping(f"rows[{i}]", r, keys, "a row of step_table()") for i, r in enumerate(items("rows", rows, "step_table()'s list"))]
    lines = [head]
    for r in rows:
        t, s = r["tokens"], r["sequences"]
        lines.append(f"{r['label']:<26}{r['steps']:>7,}{t['mean']:>13,.0f}{t['std']:>8,.0f}{t['cv']:>7.0%}"
                     f"{t['p5']:>8,.0f}{t['p95']:>8,.0f}{s['mean']:>6.1f} ±{s['std']:>3.0f}"
                     f"{r['utilization']:>7.0%}{r['per_token_lr_swing']:>9.2f}×")
    return "\n".join(lines)
