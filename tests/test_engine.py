"""packviz's own engine on the tiny Llama-3 (CPU, fp32): the scheduler's plans executed.

Every policy gives every request exactly the tokens it gets alone -- with prompts that cross
page boundaries, chunks split at odd offsets, preemption and recomputation, mixed steps; a
mixed step's logits equal transformers' forward of each sequence alone; the simulator, given
the engine's step times, makes the same plans; every region and page is free at the end.
"""

import doctest
import json

import numpy as np
import pytest
import torch

from packviz.serving import POLICIES, ServeConfig, make_scheduler, run_engine, simulate, summary
from packviz.serving.engine import attention, kv, llama, run, runner
from packviz.serving.engine.kv import KVCache
from packviz.serving.hf import disable_eos, generate_alone
from packviz.serving.simulator import recorded_clock
from packviz.trace import Trace, azure_conv


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    from packviz.model import build_model

    m = build_model("tiny", seed=0)
    disable_eos(m)
    return m


def window(n=10, seed=0, scale=16):
    """Real trace requests at 1/scale (prompts and outputs), all at t = 0: ragged, and fast on a CPU."""
    w = azure_conv().window(n, seed=seed)
    return Trace(np.zeros(n), -(-w.prompt_tokens // scale), -(-w.generated_tokens // scale), name="tiny window")


@pytest.fixture(scope="module")
def alone(tiny):
    """Each request of :func:`window` run alone by transformers' ``generate``: the reference."""
    tr = window()
    r = run_engine(tiny, tr, "continuous", max_batch=4)
    return tr, r.prompts, generate_alone(tiny, r.prompts, tr.generated_tokens.tolist())


def test_doctests():
    for module in (run, runner, kv, llama, attention):
        assert doctest.testmod(module).failed == 0, module.__name__


# (policy, serve config): page crossings, odd chunk offsets, preemption, mixed steps
CASES = [
    ("static", dict(max_batch=4)),
    ("static", dict(max_batch=3, kv_budget_tokens=200)),               # the budget shrinks some batches
    ("static-packed", dict(max_batch=4)),
    ("continuous", dict(max_batch=4)),
    ("continuous", dict(max_batch=4, kv_budget_tokens=128)),           # preemption and recomputation
    ("chunked", dict(max_batch=4, token_budget=7)),                    # chunks split at odd offsets
    ("chunked", dict(max_batch=3, token_budget=11, kv_budget_tokens=112, page_size=16)),
]


@pytest.mark.parametrize("policy, kw", CASES)
def test_every_request_gets_its_tokens_alone(tiny, alone, policy, kw):
    tr, prompts, reference = alone
    r = run_engine(tiny, tr, policy, debug=True, **kw)
    assert r.prompts == prompts                                       # the same seed, the same prompts
    assert [len(o) for o in r.outputs] == tr.generated_tokens.tolist()
    bad = [i for i, (a, b) in enumerate(zip(r.outputs, reference)) if a != b]
    assert not bad, f"{policy}: requests {bad} differ from running alone"
    assert r.attention == "reference" and not any(r.graphed)


def test_the_cases_exercise_what_they_claim(tiny, alone):
    tr = alone[0]
    assert max(tr.prompt_tokens) > 16 and len(set(tr.prompt_tokens.tolist())) > 5      # pages of 16 crossed
    pre = run_engine(tiny, tr, "continuous", max_batch=4, kv_budget_tokens=128)
    assert pre.ledger.preemptions > 0 and pre.ledger.recomputed_tokens > 0
    ch = run_engine(tiny, tr, "chunked", max_batch=4, token_budget=7)
    pieces = [p for plan in ch.plans for p in plan.prefills]
    assert any(p.done % 16 and not p.last for p in pieces)                             # a chunk ends mid-page
    assert any(p.done and p.done % 2 for p in pieces)                                  # a chunk starts at an odd offset
    assert any(plan.decodes and plan.prefills for plan in ch.plans)                    # mixed steps
    st = run_engine(tiny, tr, "static", max_batch=4)
    assert st.ledger.prefill_pad_tokens > 0 and st.ledger.decode_idle_slot_steps > 0


def test_a_mixed_step_matches_transformers_per_sequence(tiny):
    """Logits of every emitting row of mixed steps (decodes + chunks) against each sequence alone."""
    tr = window(6, seed=2)
    cfg = ServeConfig("chunked", max_batch=3, token_budget=9)
    prompts = [list(p) for p in run_engine(tiny, tr, "chunked", max_batch=3, token_budget=9).prompts]
    sizer, _ = run.region_sizer(tr, cfg)
    engine = run.Engine(tiny, run.kv_capacity(tr, cfg), 3, run.longest_region(tr, cfg), sizer, prompts, debug=True)
    sched = make_scheduler(tr, cfg, run.default_kv_budget(tr, cfg))
    checked = 0
    while not sched.done:
        sched.arrive()
        plan = sched.plan()
        arrays = engine.begin(plan)
        logits = engine.logits(arrays)
        if plan.decodes and plan.prefills:
            ends = [c + 1 for c in plan.contexts] + [p.done + p.tokens for p in plan.prefills if p.last]
            for row, (r, end) in enumerate(zip([*plan.decodes, *(p.request for p in plan.prefills if p.last)], ends)):
                with torch.no_grad():
                    want = tiny(torch.tensor([engine.seqs[r][:end]]), use_cache=False).logits[0, -1]
                assert (logits[row] - want).abs().max().item() < 1e-4
                checked += 1
        engine.end(plan, arrays, runner.sample(logits))
        sched.commit(plan, 1.0)
    assert checked >= 5


@pytest.mark.parametrize("policy", POLICIES)
def test_the_simulator_replays_the_engines_schedule(tiny, policy):
    tr = window(8, seed=4)
    kw = dict(max_batch=3, token_budget=8, kv_budget_tokens=160)
    r = run_engine(tiny, tr, policy, **kw)
    sim = simulate(tr, policy, model="tiny", clock=r.step_seconds, **kw)
    assert [p.key() for p in sim.plans] == [p.key() for p in r.plans]
    np.testing.assert_allclose(sim.finish_s, r.finish_s, rtol=1e-12)
    assert sim.ledger.steps == r.ledger.steps == len(r.step_seconds)


def test_trace_arrivals_skip_idle_time(tiny):
    tr = Trace(np.array([0.0, 50.0, 100.0]), np.array([5, 9, 3]), np.array([3, 2, 4]))
    r = run_engine(tiny, tr, "continuous", max_batch=2)
    assert r.start_s.tolist() == [0.0, 50.0, 100.0]               # the clock jumped to each arrival
    assert r.seconds < 10                                         # and nothing waited for it
    s = summary(r)
    assert s["clock"] == "executed" and s["engine"]["attention"] == "reference"
    assert s["gpu_busy_fraction"] is None and s["useful_flop_fraction"] is None       # no GPU, no datasheet peak
    json.loads(json.dumps(s, allow_nan=False))


def test_every_region_and_page_is_free_after_a_run(tiny, monkeypatch):
    tr = window()
    cfg = ServeConfig("continuous", max_batch=4, kv_budget_tokens=128)
    r = run_engine(tiny, tr, "continuous", max_batch=4, kv_budget_tokens=128)
    assert r.ledger.preemptions > 0
    sched = make_scheduler(tr, cfg, 128)
    from packviz.serving.simulator import Ledger, replay

    replay(sched, recorded_clock(r.step_seconds), Ledger(), run.Pricer("tiny", run.device_cost(torch.device("cpu"))),
           cfg)
    assert sched.pages_after(0) == 0 and not sched.running and sorted(sched.free_slots) == [0, 1, 2, 3]
    monkeypatch.setattr(KVCache, "free", lambda self, request: None)     # a leak is caught
    with pytest.raises(RuntimeError, match="KV regions still held after the run"):
        run_engine(tiny, window(3), "continuous", max_batch=3)
    with pytest.raises(RuntimeError, match="already holds a KV region|KV cache full"):    # or sooner, re-admitted
        run_engine(tiny, tr, "continuous", max_batch=4, kv_budget_tokens=128)


def test_debug_mode_catches_a_read_outside_the_region():
    cache = KVCache(1, 64, 2, 4, torch.float32, "cpu")
    a, b = cache.allocate(0, 16), cache.allocate(1, 16)
    cache.check_reads([0, 1], [a, b], [16, 3])
    with pytest.raises(AssertionError, match="request 1 reads"):
        cache.check_reads([0, 1], [a, a], [3, 3])
    with pytest.raises(AssertionError, match="request 0 reads"):
        cache.check_reads([0], [a], [17])


def test_fragmented_cache_is_compacted_and_keeps_its_values():
    cache = KVCache(2, 40, 1, 2, torch.float32, "cpu")
    for r in range(4):
        cache.allocate(r, 10)
    cache.kv.copy_(torch.arange(cache.kv.numel(), dtype=torch.float32).view_as(cache.kv))
    keep = {r: cache.kv[:, :, s:s + n].clone() for r, (s, n) in cache.regions.items() if r in (1, 3)}
    cache.free(0), cache.free(2)                          # holes of 10 at 0 and 20: 20 free, none of 15
    start = cache.allocate(9, 15)
    assert cache.compactions == 1 and start == 20
    for r, values in keep.items():
        s, n = cache.regions[r]
        assert torch.equal(cache.kv[:, :, s:s + n], values)
    with pytest.raises(RuntimeError, match="KV cache full"):
        cache.allocate(10, 6)


def test_rope_frequencies_match_transformers():
    from packviz.model import build_model

    for name in ("tiny", "tiny-3.2", "llama-3.1-8b"):
        from packviz.model import llama_config

        cfg = llama_config(name)
        if name == "llama-3.1-8b":
            from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

            want = LlamaRotaryEmbedding(cfg).inv_freq
        else:
            want = build_model(name).model.rotary_emb.inv_freq
        assert torch.equal(llama.inv_freq(cfg), want), name


def test_tied_embeddings_and_llama3_rope_scaling(one_torch_thread):
    from packviz.model import build_model

    m = build_model("tiny-3.2", seed=1)
    disable_eos(m)
    tr = window(5, seed=6)
    r = run_engine(m, tr, "chunked", max_batch=2, token_budget=5)
    assert r.outputs == generate_alone(m, r.prompts, tr.generated_tokens.tolist())


def test_the_model_still_works_after_its_weights_are_fused(tiny):
    x = torch.tensor([[5, 7, 9]])
    before = tiny(x, use_cache=False).logits
    run_engine(tiny, window(3), "continuous", max_batch=2)
    run_engine(tiny, window(3), "continuous", max_batch=2)         # a second engine reuses the fused tensors
    assert torch.equal(tiny(x, use_cache=False).logits, before)
    attn = tiny.model.layers[0].self_attn
    assert attn.q_proj.weight.data_ptr() == attn.packviz_fused_q_proj_k_proj_v_proj.data_ptr()


@pytest.mark.parametrize("kw, error, message", [
    (dict(policy="fifo"), ValueError, "policy must be one of"),
    (dict(max_batch=0), ValueError, "max_batch must be a positive integer"),
    (dict(kv_budget_tokens=8), ValueError, "kv_budget_tokens 8 is too small for request"),
    (dict(arrivals="later"), ValueError, "arrivals must be one of"),
    (dict(cuda_graphs=True), ValueError, "cuda_graphs=True needs a CUDA device and a FlashAttention path"),
    (dict(temperature=0.7), TypeError, "temperature"),
])
def test_bad_input_is_named(tiny, kw, error, message):
    kw = {"policy": "continuous", **kw}
    with pytest.raises(error, match=message):
        run_engine(tiny, window(3), kw.pop("policy"), **kw)


def test_not_a_llama_or_not_a_trace(tiny):
    with pytest.raises(TypeError, match="needs a transformers LlamaForCausalLM, got Linear"):
        run_engine(torch.nn.Linear(2, 2), window(3))
    with pytest.raises(TypeError, match="trace must be a packviz.trace.Trace, got list"):
        run_engine(tiny, [1, 2, 3])


def test_the_probe_picks_the_first_gpu_path_that_agrees(monkeypatch):
    """On a GPU the probe tries varlen_attn, then FA2's op; a path that raises or disagrees is skipped, named."""
    monkeypatch.setattr(attention.torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(attention, "gpu_candidates", lambda: ["varlen-attn", "flash-seqused-k"])

    def probe(path):
        if path == "varlen-attn":
            raise RuntimeError("no kernel image\nsecond line")
        return 3e-3
    path, why = attention.choose_path("cuda", torch.bfloat16, probe)
    assert path == "flash-seqused-k"
    assert why == ("varlen-attn failed its probe (RuntimeError: no kernel image); "
                   "flash-seqused-k matched the reference within 0.003 (relative) on the probe")
    path, why = attention.choose_path("cuda", torch.bfloat16, lambda p: 0.5)
    assert path == "reference" and why.count("differs from the reference by 0.5") == 2
    assert attention.choose_path("cuda", torch.float32, probe)[0] == "reference"       # FA2: fp16/bf16 only
    assert attention.choose_path("cpu", torch.bfloat16, probe) == ("reference", "cpu: no FlashAttention kernel "
                                                                   "on this device")


def test_this_torch_offers_both_gpu_paths():
    assert attention.gpu_candidates() == ["varlen-attn", "flash-seqused-k"]     # torch 2.13: seqused_k, enable_gqa


def test_the_mlp_over_token_slices_equals_one_piece(tiny, monkeypatch):
    tr = window(4, seed=5)
    whole = run_engine(tiny, tr, "static", max_batch=4)
    monkeypatch.setattr(llama, "MLP_SLICE", 7)                      # a padded prefill of 4 × W tokens, in slices of 7
    sliced = run_engine(tiny, tr, "static", max_batch=4)
    assert sliced.outputs == whole.outputs and max(p.num_tokens for p in sliced.plans) > 7
