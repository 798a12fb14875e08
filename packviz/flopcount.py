"""Check the FLOP model (:mod:`packviz.flops`) against ``torch.utils.flop_counter.FlopCounterMode``.

FlopCounterMode intercepts every aten op of a forward and adds up the FLOPs of the ones it
has a formula for (matmuls, ``bmm``, attention kernels). What it counts for attention
depends on the kernel (torch 2.13):

===========================  ===================================================
attention the model runs      what FlopCounterMode counts
===========================  ===================================================
eager (``matmul`` / ``bmm``)  the whole T × T square, masked pairs included
SDPA on CUDA (flash, mem-     the whole square too: causality and masks ignored
efficient, cuDNN)
SDPA on CPU                   **zero**: the CPU kernels have no FLOP formula
varlen flash ops              each sequence's full square (not its triangle)
FlexAttention                 the full square × (1 - sparsity hint)
===========================  ===================================================

So it counts what a *dense* kernel multiplies, never what a causal one needs: it can check
the ``"masked"`` execution model (a padded or a dense-packed layout), run with ``attn_implementation="eager"``.
"""

from __future__ import annotations

from .model_extra import require_model_extra

require_model_extra("packviz.flopcount")  # before torch: without it, one line naming packviz[model]
import torch
from torch.utils.flop_counter import FlopCounterMode

from .flops import Flops, layout_flops, sequence_lengths
from .shapes import get_shape, shape_from_config
from .checks import int_in_range
from .layout import as_layout
from .model import batch_from_layout, check_model, last_token_index


def count_layout_flops(model, layout, lm_head: str = "all", seed: int = 0) -> int:
    """FLOPs FlopCounterMode counts when ``model`` runs every forward of ``layout`` densely.

    A padded layout runs batch by batch (``attention_mask`` of its pads); a packed one row by
    row, padded up to its full width C with a filler segment (what a dense kernel over a
    C-slot pack computes). Token ids are random; ``lm_head="last"`` keeps one logit row per
    sequence (``logits_to_keep=1`` on padded rows). Use ``attn_implementation="eager"``:
    CPU SDPA is counted as zero (module docstring).
    """
    check_model(model)
    layout = as_layout("layout", layout)
    seed = int_in_range("seed", seed, 0, 2**63 - 1)
    gen = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    tokens = [torch.randint(0, vocab, (int(n),), generator=gen)
              for n in sequence_lengths(layout)]  # every sequence is placed, so index i = sequence i
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        if layout.kind == "padded":
            for rows in layout.batches():
                b = batch_from_layout(layout, rows, tokens, device=device)
                model(**b, use_cache=False, logits_to_keep=1 if lm_head == "last" else 0)
        else:
            for r in range(layout.num_rows):
                b = batch_from_layout(layout, r, tokens, pad_to=int(layout.widths[r]), device=device)
                last = last_token_index(b, num_sequences=len(layout.row_lengths(r)))  # not the filler's
                model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False,
                      logits_to_keep=0 if lm_head == "all" else last)
    return int(counter.get_total_flops())


def check(model, layout, lm_head: str = "all") -> dict:
    """Predicted (:func:`packviz.flops.layout_flops`) vs counted FLOPs of a padded or packed layout.

    Returns ``{"execution", "predicted": Flops, "counted": int, "rel_error": float}``, the
    execution model ``"masked"``: eager attention multiplies every row's full square.
    """
    check_model(model)
    layout = as_layout("layout", layout)
    shape = shape_from_config(model.config)
    execution = "masked"
    predicted: Flops = layout_flops(layout, get_shape(shape), execution, lm_head=lm_head)
    counted = count_layout_flops(model, layout, lm_head=lm_head)
    return {"execution": execution, "predicted": predicted, "counted": counted,
            "rel_error": abs(counted - predicted.total) / counted if counted else float("inf")}
