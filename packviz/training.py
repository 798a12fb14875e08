"""Packing for training: a packed step has the padded batch's loss and gradients, and four ways to lose them.

A padded step and a packed step of the same two sequences, A (3 tokens) and B (2)::

    padded (B, L) = (2, 3)               packed (1, T) = (1, 5)
    input_ids      a0   a1   a2          input_ids      a0   a1   a2   b0   b1
                   b0   b1    ·          position_ids    0    1    2    0    1
    attention_mask  1    1    1          labels       -100   a1   a2 -100   b1
                    1    1    0          (no attention_mask; use_cache=False)
    labels         a0   a1   a2
                   b0   b1 -100

**The shift convention.** transformers shifts the labels *inside* the loss
(``ForCausalLMLoss`` in ``transformers/loss/loss_utils.py``: every row of ``labels`` gets one
-100 appended, then ``labels[..., 1:]``), so token i is trained to predict ``labels[i + 1]``
(:func:`shifted_targets`). The -100 that ``DataCollatorWithFlattening`` puts on each
sequence's *first* label therefore lands on the previous sequence's *last* token::

    slot          0    1    2    3    4
    input_ids    a0   a1   a2   b0   b1
    labels     -100   a1   a2 -100   b1      what the collator / packed_batch give
    targets      a1   a2 -100   b1 -100      labels[i + 1]: what token i learns

A's last token predicts nothing; A never learns to predict B. A padded row's first label
is never a target (nothing precedes it) and its pads must be -100. Both layouts hold the
same targets (a1 a2 b1), so the token mean -- sum of cross-entropies / number of targets --
is the same loss of the same weights, and has the same gradients. :func:`compare_steps`
measures it on the real ``LlamaForCausalLM``: about 1e-7 (loss) and 1e-6 (gradients),
relative, in fp32 on CPU.

**num_items_in_batch.** With gradient accumulation the divisor must be the targets of the
whole optimizer step, counted after the shift (the Trainer counts ``labels[..., 1:] != -100``
over all micro-batches of the step; :func:`count_targets`), and passed to the model as
``num_items_in_batch``: the loss becomes sum / N instead of each micro-batch's own mean
(transformers PR #34191; torchtune PR #1875).

**Failure modes** (:data:`FAILURES`), each silent: the loss still goes down.

Every tensor here is on the model's device; batches are dicts of int64 tensors of shape
(B, L) (padded) or (R, W) (R packed rows of width W; one row: (1, T)).
"""

from __future__ import annotations

from dataclasses import dataclass

from .model_extra import require_model_extra

require_model_extra("packviz.training")  # before torch: without it, one line naming packviz[model]
import torch

from . import model as M
from .checks import (flag, instance_of, int_in_range, items, mapping, nonnegative_int, one_of, positive_float,
                     positive_int)
from .layout import as_layout
from .packing import validate_lengths
from .steps import NORMALIZATIONS

IGNORE_INDEX = -100
"""Label of a position that is no target (``nn.CrossEntropyLoss``'s default ``ignore_index``)."""

PROOF_TOLERANCE = 1e-5
"""Largest relative difference (loss, and every parameter's gradient) accepted as "equal" in fp32."""

FAILURE_THRESHOLD = 1e-2
"""Smallest gradient difference that counts as a failure: 1,000 × :data:`PROOF_TOLERANCE`.

The correct paths measure about 1e-6 (float rounding, summation order); every failure
mode measures 0.25 or more on the tiny model with the trace's lengths. 1e-2 sits about
two orders of magnitude from both: no reordering of sums reaches it, and a failure still
clears it on other lengths or seeds. A failure mode that measures below it has stopped
demonstrating the failure, and its test says so. (The loss is held to less: random
weights make every target cost about ln(vocab), so re-weighting targets moves the mean
loss by only ~1e-4. A failure's loss must still differ by more than the proof's tolerance.)
"""

FAILURES = {
    "sequence_mean": "loss = mean over sequences of each sequence's mean loss, not the mean over all "
                     "targets: a 50-token example weighs as much as a 4,000-token one",
    "micro_batch_normalization": "gradient accumulation divides each micro-batch's summed loss by its own "
                                 "targets (then by K), not by the targets of the whole step",
    "unmasked_boundary_labels": "labels = input_ids in a packed row: each sequence's last token is trained "
                                "to predict the next sequence's first token",
    **{f"isolation:{k}": v for k, v in M.TRAPS.items()},
}
"""The failure modes: name -> what goes wrong. ``isolation:*`` are :data:`packviz.model.TRAPS` in training."""


@dataclass(frozen=True, eq=False)
class Step:
    """One optimizer step, measured: the loss, every parameter's gradient, the targets trained.

    ``grads`` maps each parameter name of ``model.named_parameters()`` to its gradient
    (same shape as the parameter; zeros where the step gave it none).
    """

    loss: float
    grads: dict
    targets: int


# ---------------------------------------------------------------------- batches
def random_sequences(lengths, vocab: int, seed: int = 0) -> list[list[int]]:
    """Seeded random token ids in ``[0, vocab)``, one list per length.

    >>> [len(s) for s in random_sequences([3, 5], vocab=256)]
    [3, 5]
    """
    lengths = validate_lengths(lengths)
    vocab = positive_int("vocab", vocab, maximum=2**63 - 1)
    g = torch.Generator().manual_seed(int_in_range("seed", seed, 0, 2**63 - 1))
    return [torch.randint(0, vocab, (int(n),), generator=g).tolist() for n in lengths]


def padded_train_batch(sequences, pad_id: int = 0, device=None) -> dict:
    """The padded per-sequence batch for training: one row per sequence, right-padded.

    ``input_ids``, ``attention_mask`` and ``labels``, each (B, L), int64; ``labels`` is
    ``input_ids`` with -100 on the pads.

    Pitfalls
    --------
    * ``labels = input_ids.clone()`` with ``pad_token_id = eos_token_id`` (a common
      Llama set-up) trains on the pads: every row learns to emit EOS after EOS, and the
      target count includes the pads. Mask the pads by ``attention_mask``, not by id.
    """
    batch = M.padded_batch(sequences, pad_id=pad_id, device=device)
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
    return batch


def packed_rows_batch(packs, pad_id: int = 0, device=None) -> dict:
    """R packed rows in one forward: ``input_ids``, ``position_ids``, ``labels``, each (R, W).

    ``packs[r]`` is the list of sequences of row r. Every row is padded to the widest, W,
    with a filler segment of ``pad_id`` (its own sequence: positions 0, 1, ..., labels -100;
    :func:`packviz.model.packed_batch` with ``pad_to``). transformers' SDPA, eager and flex
    paths find each row's boundaries in its ``position_ids``.

    Pitfalls
    --------
    * Filler positions must count up from 0 like a sequence. Zero-filled ``position_ids``
      make every filler slot a one-token sequence of its own (transformers #39814): harmless
      for the loss while the labels are -100, but a varlen kernel then sees T fake sequences.
    * No ``cu_seq_lens_*`` keys: for R > 1 they would have to describe the flattened (R·W)
      stream. The flash-attention path needs them (or one row); SDPA/eager/flex do not.
    """
    packs = items("packs", packs, "a list of packs, each a list of token-id lists")
    rows = [M.packed_batch(p, pad_id=pad_id, device=device) for p in packs]
    if not rows:
        raise ValueError("packs is empty: give at least one pack (a list of sequences)")
    width = max(r["input_ids"].shape[1] for r in rows)
    rows = [M.packed_batch(p, pad_to=width, pad_id=pad_id, device=device) for p in packs]
    return {k: torch.cat([r[k] for r in rows]) for k in ("input_ids", "position_ids", "labels")}


def packs_of(layout, sequences) -> list[list[list[int]]]:
    """The sequences of each row of a packed :class:`~packviz.layout.Layout`, in slot order.

    ``sequences[i]`` are the token ids of the layout's sequence i (lengths must match).
    """
    layout = as_layout("layout", layout)
    sequences = items("sequences", sequences, "a list of token-id lists, one per sequence of the layout")
    if len(sequences) < layout.num_sequences:
        raise ValueError(f"sequences has {len(sequences)} entries, the layout {layout.num_sequences} sequences; give one token list per sequence")
    if layout.kind != "packed":
        raise ValueError(f"packs_of needs a packed layout, got a {layout.kind!r} one; pack with next-fit, ffd or bfd")
    out = []
    for r in range(layout.num_rows):
        row = []
        for s, _, n in layout.row_segments(r).tolist():
            if len(items(f"sequences[{s}]", sequences[s], "a list of token ids")) != n:
                raise ValueError(f"sequence {s} has {len(sequences[s])} tokens, the layout places {n}; "
                                 "pack the lengths of these sequences (no truncate or split)")
            row.append(list(sequences[s]))
        out.append(row)
    return out


def shifted_targets(labels: torch.Tensor) -> torch.Tensor:
    """What each token is trained to predict, (B, L): ``labels[:, i + 1]``, -100 at each row's end.

    The shift transformers' ``ForCausalLMLoss`` applies inside the loss.

    >>> shifted_targets(torch.tensor([[-100, 11, 12, -100, 21]])).tolist()
    [[11, 12, -100, 21, -100]]
    """
    M.check_tensor("labels", labels)
    return torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]


def count_targets(labels: torch.Tensor) -> int:
    """Targets of ``labels`` (B, L) after the shift: ``(labels[..., 1:] != -100).sum()`` (the Trainer's count).

    Sum it over the micro-batches of an optimizer step to get ``num_items_in_batch``.

    Pitfalls
    --------
    * Counting ``labels != -100`` *before* the shift counts each padded row's first label,
      which is never a target: the padded count exceeds the packed one by one per sequence
      (the Trainer counts after the shift for causal LMs).
    """
    M.check_tensor("labels", labels)
    return int((labels[..., 1:] != IGNORE_INDEX).sum())


def unmasked_labels(batch: dict) -> torch.Tensor:
    """The boundary bug: ``labels = input_ids`` for a packed batch, (R, W) (nothing masked)."""
    M.check_batch(batch, ("input_ids",), "a batch of packviz.model.packed_batch or training.padded_train_batch")
    return batch["input_ids"].clone()


def only_sequence_labels(batch: dict, index: int) -> torch.Tensor:
    """Labels (1, T) of a one-row packed batch with every target but sequence ``index``'s masked."""
    M.check_batch(batch, ("labels", "cu_seq_lens_q"), "a batch of packviz.model.packed_batch")
    cu = batch["cu_seq_lens_q"].tolist()
    if not 0 <= nonnegative_int("index", index) < len(cu) - 1:
        raise ValueError(f"sequence index {index} out of range: the pack holds {len(cu) - 1} sequences "
                         f"(0 .. {len(cu) - 2})")
    keep = torch.full_like(batch["labels"], IGNORE_INDEX)
    keep[:, cu[index]: cu[index + 1]] = batch["labels"][:, cu[index]: cu[index + 1]]
    return keep


def perturbed(sequences, keep: int, vocab: int) -> list[list[int]]:
    """A copy of ``sequences`` with every token of every sequence except ``keep`` changed (same lengths)."""
    sequences = [items(f"sequences[{i}]", s, "a list of token ids")
                 for i, s in enumerate(items("sequences", sequences, "a list of token-id lists"))]
    if not sequences:
        raise ValueError("sequences is empty: give at least two sequences (one kept, others changed)")
    keep = int_in_range("keep (the sequence left unchanged)", keep, 0, len(sequences) - 1)
    vocab = positive_int("vocab", vocab)
    if vocab < 2:
        raise ValueError(f"vocab={vocab}: need at least 2 token ids to change one")
    return [list(s) if i == keep else [(t + 1 + j) % vocab for j, t in enumerate(s)]
            for i, s in enumerate(sequences)]


# ---------------------------------------------------------------------- steps
def model_inputs(batch: dict, labels: torch.Tensor | None = None) -> dict:
    """The keyword arguments of a correct training forward of ``batch``.

    ``input_ids``, ``labels`` (the batch's own unless given), ``position_ids`` (packed) or
    ``attention_mask`` (padded), the ``cu_seq_lens_*`` / ``max_length_*`` kwargs if present
    (read by the flash and varlen backends), and ``use_cache=False``.

    Pitfalls
    --------
    * ``use_cache`` defaults to the config's ``use_cache`` (True for Llama) even in a
      training forward: a KV cache is created, and with a cache transformers skips the
      block-diagonal mask it derives from ``position_ids`` -- every packed sequence attends
      to the ones before it (``isolation:kv_cache_on``). The Trainer sets
      ``model.config.use_cache = args.use_cache`` (False by default); a hand-written loop
      must pass ``use_cache=False`` itself.
    * Never pass the tokenizer's all-ones ``attention_mask`` with a packed row
      (``isolation:stray_attention_mask``).
    """
    M.check_batch(batch, ("input_ids",) + (("labels",) if labels is None else ()), "a batch of packviz.model.packed_batch or training.padded_train_batch")
    if labels is not None:
        M.check_tensor("labels", labels)
    keys = ("input_ids", "position_ids", "attention_mask", "cu_seq_lens_q", "cu_seq_lens_k",
            "max_length_q", "max_length_k")
    kw = {k: batch[k] for k in keys if k in batch}
    kw["labels"] = batch["labels"] if labels is None else labels
    kw["use_cache"] = False
    return kw


def _measure(model, run) -> Step:
    """Zero the gradients, ``run()`` (backward inside; returns loss, targets), collect every gradient."""
    model.zero_grad(set_to_none=True)
    loss, targets = run()
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
             for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return Step(float(loss), grads, int(targets))


def train_step(model, micro_batches, normalize: str = "step") -> Step:
    """One optimizer step's loss and gradients over ``micro_batches`` (a batch dict or a list of them).

    The model's own loss (``ForCausalLMLoss``), backward on each micro-batch, gradients
    accumulated. ``normalize``:

    * ``"step"``: ``num_items_in_batch`` = the step's targets, N (:func:`count_targets`
      summed): each micro-batch contributes sum / N, and the step equals one big batch.
    * ``"micro_batch"``: each micro-batch's own token mean, divided by K -- what a loop
      did before transformers PR #34191 (and what PR #35207 still does when N is unknown).

    Pitfalls
    --------
    * ``"micro_batch"`` weighs a target of micro-batch k by 1 / (K n_k): micro-batches
      with few targets count more (:func:`packviz.steps.accumulation_weights`). Packed
      rows hold different numbers of sequences, hence of targets, even when full.
    """
    M.check_model(model)
    one_of("normalize", normalize, NORMALIZATIONS)
    micro = [micro_batches] if isinstance(micro_batches, dict) else items("micro_batches", micro_batches,
                                                                        "a batch dict or a list of them")
    if not micro:
        raise ValueError("micro_batches is empty: give at least one batch")
    for i, b in enumerate(micro):
        M.check_batch(b, ("input_ids", "labels"), "a batch of packviz.model.packed_batch", f"micro_batches[{i}]")
    total = sum(count_targets(b["labels"]) for b in micro)
    if total == 0:
        raise ValueError(f"the step's {len(micro)} micro-batches hold no target (every label after the shift "
                         "is -100): nothing to train; check the labels")

    def run():
        loss = 0.0
        for b in micro:
            if normalize == "step":
                part = model(**model_inputs(b), num_items_in_batch=total).loss
            else:
                part = model(**model_inputs(b)).loss / len(micro)
            part.backward()
            loss += float(part.detach())
        return loss, total

    return _measure(model, run)


def target_sequence_ids(batch: dict) -> torch.Tensor:
    """For each slot, the number of the sequence it belongs to, (B, L), numbered across rows.

    Packed rows (``position_ids`` present): a new sequence at every position 0. Padded
    rows: one sequence per row.
    """
    M.check_batch(batch, ("input_ids",), "a batch of packviz.model.packed_batch or training.padded_train_batch")
    if "position_ids" not in batch:
        b, width = batch["input_ids"].shape
        return torch.arange(b, device=batch["input_ids"].device)[:, None].expand(b, width)
    starts = batch["position_ids"] == 0
    per_row = starts.sum(1)
    offset = torch.cumsum(per_row, 0) - per_row
    return torch.cumsum(starts.long(), 1) - 1 + offset[:, None]


def sequence_mean_step(model, batch: dict) -> Step:
    """The per-sequence mean: each sequence's mean cross-entropy, then the mean over sequences.

    Logits (B, L, vocab) of a correct forward; targets (B, L) by :func:`shifted_targets`;
    sequences without a target (a filler) are left out.

    Pitfalls
    --------
    * This is *not* what a packed loss computes (the token mean), and it weighs a sequence
      of 50 tokens like one of 4,000 (:func:`packviz.steps.token_weights`). With equal
      lengths the two coincide, which is why a test with equal lengths cannot catch it.
    """
    M.check_model(model)
    M.check_batch(batch, ("input_ids", "labels"), "a batch of packviz.model.packed_batch or training.padded_train_batch")
    def run():
        kw = model_inputs(batch)
        labels = kw.pop("labels")
        logits = model(**kw).logits.float()
        targets = shifted_targets(labels)
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        valid = targets != IGNORE_INDEX
        seq = target_sequence_ids(batch)[valid]
        n = int(seq.max()) + 1
        sums = torch.zeros(n, dtype=ce.dtype, device=ce.device).index_add(0, seq, ce[valid])
        counts = torch.bincount(seq, minlength=n)
        loss = (sums[counts > 0] / counts[counts > 0]).mean()
        loss.backward()
        return float(loss.detach()), int(valid.sum())

    return _measure(model, run)


def trap_step(model, batch: dict, trap: str | None = None, labels: torch.Tensor | None = None) -> Step:
    """A one-row packed training step run correctly (``trap=None``) or the broken way ``trap``.

    ``trap``: one of :data:`packviz.model.TRAPS` (its forward kwargs, plus the labels).
    ``labels`` (1, T): default the batch's own.
    """
    M.check_model(model)
    M.check_batch(batch, ("input_ids", "labels"), "a batch of packviz.model.packed_batch or training.padded_train_batch")
    if trap is not None:
        one_of("trap", trap, M.TRAPS)
    labels = batch["labels"] if labels is None else labels

    def run():
        kw = model_inputs(batch, labels) if trap is None else {**M.trap_inputs(model, batch, trap), "labels": labels}
        loss = model(**kw).loss
        loss.backward()
        return float(loss.detach()), count_targets(labels)

    return _measure(model, run)


# ---------------------------------------------------------------------- comparing
def grad_rel_diffs(grads: dict, ref: dict) -> dict:
    """Per parameter: max |g - g_ref| / max |g_ref| (0 where both are all zeros).

    Scaled per tensor by the reference's largest entry, so that near-zero entries (the
    embedding rows of absent tokens) cannot blow the ratio up, and every tensor -- the
    tiny norm weights as much as the lm_head -- is checked at its own scale.
    """
    grads, ref = mapping("grads", grads, what="a dict {parameter: gradient}"), mapping("ref", ref, what="a dict {parameter: gradient}")
    missing = [name for name in ref if name not in grads]
    if missing:
        raise ValueError(f"grads has no {missing[0]!r}, which ref holds: compare the gradients of one model")
    out = {}
    for name, g in ref.items():
        scale = float(g.abs().max())
        diff = float((grads[name] - g).abs().max())
        out[name] = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    return out


def compare_steps(step: Step, ref: Step) -> dict:
    """How far ``step`` is from ``ref``: relative loss difference, largest gradient difference, and where.

    Keys: ``loss_rel_diff``, ``grad_rel_diff`` (max over parameters of :func:`grad_rel_diffs`),
    ``worst_param``, ``targets`` and ``ref_targets``.
    """
    instance_of("step", step, Step, "a Step (train_step gives one)"), instance_of("ref", ref, Step, "a Step (train_step gives one)")
    diffs = grad_rel_diffs(step.grads, ref.grads)
    worst = max(diffs, key=diffs.get)
    loss_rel = abs(step.loss - ref.loss) / abs(ref.loss) if ref.loss else abs(step.loss)
    return {"loss_rel_diff": loss_rel, "grad_rel_diff": diffs[worst], "worst_param": worst,
            "targets": step.targets, "ref_targets": ref.targets}


# ---------------------------------------------------------------------- the proofs
def prove_one_pack(model, sequences) -> dict:
    """One packed row vs the padded per-sequence batch: :func:`compare_steps` (both token means)."""
    M.check_model(model)
    device = next(model.parameters()).device
    packed = train_step(model, M.packed_batch(sequences, device=device))
    padded = train_step(model, padded_train_batch(sequences, device=device))
    return compare_steps(packed, padded)


def prove_packs(model, packs) -> dict:
    """Several packed rows in one forward ((R, W), :func:`packed_rows_batch`) vs the same sequences padded."""
    packs = items("packs", packs, "a list of packs, each a list of token-id lists")
    M.check_model(model)
    device = next(model.parameters()).device
    packed = train_step(model, packed_rows_batch(packs, device=device))
    padded = train_step(model, padded_train_batch([s for p in packs for s in p], device=device))
    return compare_steps(packed, padded)


def prove_accumulation(model, micro_packs, normalize: str = "step") -> dict:
    """Gradient accumulation over packed micro-batches (one row each) vs one padded batch of them all.

    ``normalize="step"`` (``num_items_in_batch``) is the proof; ``"micro_batch"`` is the
    failure mode, measured the same way.
    """
    micro_packs = items("micro_packs", micro_packs, "a list of packs, each a list of token-id lists")
    M.check_model(model)
    device = next(model.parameters()).device
    micro = [M.packed_batch(p, device=device) for p in micro_packs]
    accumulated = train_step(model, micro, normalize)
    padded = train_step(model, padded_train_batch([s for p in micro_packs for s in p], device=device))
    return compare_steps(accumulated, padded)


# ---------------------------------------------------------------------- the failure modes
def sequence_mean_failure(model, sequences) -> dict:
    """The per-sequence mean of the padded batch vs the packed step's token mean."""
    M.check_model(model)
    device = next(model.parameters()).device
    per_sequence = sequence_mean_step(model, padded_train_batch(sequences, device=device))
    packed = train_step(model, M.packed_batch(sequences, device=device))
    return compare_steps(per_sequence, packed)


def boundary_label_failure(model, sequences) -> dict:
    """A packed step with ``labels = input_ids`` vs the correct one (N - 1 extra targets)."""
    M.check_model(model)
    device = next(model.parameters()).device
    batch = M.packed_batch(sequences, device=device)
    wrong = train_step(model, {**batch, "labels": unmasked_labels(batch)})
    return compare_steps(wrong, train_step(model, batch))


def isolation_failure(model, sequences, victim: int, trap: str | None = None) -> dict:
    """Perturb every neighbour of sequence ``victim``; how far does the victim's own gradient move?

    The loss and gradients are those of the victim's targets alone (all other labels -100),
    in one packed row, run correctly (``trap=None``: the gradient does not move at all) or
    the broken way ``trap``. Neighbours *before* the victim are the ones that can leak in.
    """
    M.check_model(model)
    sequences = items("sequences", sequences, "a list of token-id lists")
    victim = int_in_range("victim (a sequence index)", victim, 0, max(len(sequences) - 1, 0))
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    steps = []
    for seqs in (sequences, perturbed(sequences, victim, vocab)):
        batch = M.packed_batch(seqs, device=device)
        steps.append(trap_step(model, batch, trap, only_sequence_labels(batch, victim)))
    return compare_steps(steps[1], steps[0])


def failure_table(model, sequences, micro_packs, victim: int) -> list[dict]:
    """Every failure mode of :data:`FAILURES` measured: one dict each (``name`` + :func:`compare_steps`)."""
    M.check_model(model)
    micro_packs = items("micro_packs", micro_packs, "a list of packs, each a list of token-id lists")
    rows = [("sequence_mean", sequence_mean_failure(model, sequences)),
            ("micro_batch_normalization", prove_accumulation(model, micro_packs, "micro_batch")),
            ("unmasked_boundary_labels", boundary_label_failure(model, sequences))]
    rows += [(f"isolation:{t}", isolation_failure(model, sequences, victim, t)) for t in M.TRAPS]
    return [{"name": name, **r} for name, r in rows]


def format_comparisons(rows: list[dict], tol: float = PROOF_TOLERANCE, mark_exact: bool = False) -> str:
    """Rows of ``{"name", "loss_rel_diff", "grad_rel_diff", "worst_param"}`` as aligned text.

    Differences below ``tol`` print as ``< 1e-05`` (their digits are float rounding and vary
    with the CPU), and without a parameter name; larger ones with 3 significant digits.
    ``mark_exact``: print a difference of exactly 0 as ``0 (exact)`` -- only where zero is
    guaranteed (isolation: masked pairs contribute exact zeros), not where it is luck of rounding.
    """
    keys = ("name", "loss_rel_diff", "grad_rel_diff", "worst_param")
    rows = [mapping(f"rows[{i}]", r, keys, "a dict of compare_steps() with a name") for i, r in enumerate(items("rows", rows, "a list of dicts"))]
    if not rows:
        raise ValueError("rows is empty: give at least one comparison")
    tol, mark_exact = positive_float("tol", tol), flag("mark_exact", mark_exact)
    def show(x: float) -> str:
        if x == 0 and mark_exact:
            return "0 (exact)"
        return f"< {tol:.0e}" if x < tol else f"{x:.3g}"

    width = max(len(r["name"]) for r in rows) + 2
    lines = [f"{'':<{width}}{'loss rel. diff':>16}{'grad rel. diff':>16}  largest in"]
    for r in rows:
        where = r["worst_param"] if r["grad_rel_diff"] >= tol else "-"  # rounding has no meaningful place
        lines.append(f"{r['name']:<{width}}{show(r['loss_rel_diff']):>16}{show(r['grad_rel_diff']):>16}  {where}")
    return "\n".join(lines)
