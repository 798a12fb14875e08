"""Real engines on the tiny Llama (CPU): both return, for every request, its tokens run alone;
static ``generate`` did exactly the padded prefill and decode slot-steps the simulator counts."""

import doctest

import numpy as np
import pytest

from packviz.serving import hf as engines
from packviz.trace import azure_conv


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    from packviz.model import build_model

    return build_model("tiny", seed=0)


def scaled_window(n, seed):
    """A real trace window at 1/16 scale (prompts and outputs), so the CPU run takes about a second."""
    w = azure_conv().window(n, seed=seed)
    return -(-w.prompt_tokens // 16), -(-w.generated_tokens // 16)


def test_doctests():
    assert doctest.testmod(engines).failed == 0


def test_both_engines_equal_each_request_alone_and_static_accounting_matches(tiny):
    p, g = scaled_window(8, seed=0)
    assert len(set(p.tolist())) > 3 and len(set(g.tolist())) > 3        # ragged, so padding and waiting happen
    r = engines.equality_check(tiny, p, g, batch_size=4, max_batch=4, token_budget=64, num_blocks=64, page_size=16)
    assert r["lengths_ok"]
    assert r["static_equal"], f"static generate differs from alone at request {r['static_first_mismatch']}"
    assert r["continuous_equal"], f"continuous batching differs at request {r['continuous_first_mismatch']}"
    assert r["engine"] == r["simulator"]
    assert r["engine"]["prefill_pad_tokens"] > 0
    assert r["engine"]["decode_slot_steps"] > int((g - 1).sum())             # slots waited for the longest G
    assert r["continuous_config"]["max_requests_per_batch"] == 4


def test_forward_log_counts_what_generate_ran(tiny):
    engines.disable_eos(tiny)
    prompts = engines.request_ids([5, 9, 3], tiny.config.vocab_size, seed=1)
    out = engines.static_generate(tiny, prompts, [4, 2, 6], batch_size=3)
    # one batch: prefill (3, 9), then max G - 1 = 5 decode steps of 3 rows
    assert out["shapes"] == [[(3, 9)] + [(3, 1)] * 5]
    assert (out["prefill_pad_tokens"], out["decode_slot_steps"]) == (3 * 9 - 17, 15)
    assert [len(x) for x in out["outputs"]] == [4, 2, 6]


def test_request_ids_are_random_and_never_the_pad():
    ids = engines.request_ids([50, 7], vocab=256, seed=0)
    assert [len(x) for x in ids] == [50, 7]
    flat = np.concatenate(ids)
    assert flat.min() >= 1 and flat.max() < 256 and len(set(flat.tolist())) > 20


def test_cb_config_uses_this_versions_page_name():
    kw = engines.cb_config_kwargs(max_batch=4, token_budget=64, num_blocks=8, page_size=16)
    assert kw["max_requests_per_batch"] == 4 and kw["max_batch_tokens"] == 64
    assert ("page_size" in kw) != ("block_size" in kw)
