"""The FLOP model agrees with torch's FlopCounterMode on a real (tiny) LlamaForCausalLM."""

import pytest

from packviz import flopcount
from packviz.model import build_model
from packviz.packing import pack

LENGTHS = [5, 9, 3, 7, 2]


@pytest.fixture(scope="module")
def eager():
    return build_model("tiny", attn_implementation="eager", seed=0)


@pytest.mark.parametrize("strategy, kw", [("pad", {"batch_size": 3}), ("bfd", {})])
@pytest.mark.parametrize("lm_head", ["all", "last"])
def test_within_one_percent_for_padded_and_dense(eager, strategy, kw, lm_head):
    layout = pack(LENGTHS, 16, strategy, **kw)
    r = flopcount.check(eager, layout, lm_head=lm_head)
    assert r["execution"] == "masked"
    assert r["counted"] > 0
    assert r["rel_error"] < 0.01
    # the attention term is not a rounding error here: the linear part alone would be off by more
    assert abs(r["counted"] - r["predicted"].linear) / r["counted"] > 0.01


def test_cpu_sdpa_attention_is_counted_as_zero():
    """What we teach: on CPU, FlopCounterMode sees no FLOPs in SDPA attention."""
    sdpa = build_model("tiny", attn_implementation="sdpa", seed=0)
    layout = pack(LENGTHS, 16, "bfd")
    r = flopcount.check(sdpa, layout)
    assert r["counted"] == pytest.approx(r["predicted"].linear, rel=1e-9)
    assert r["counted"] < r["predicted"].total
