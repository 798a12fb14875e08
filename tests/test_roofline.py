"""Arithmetic intensity of prefill and decode steps against a GPU's ridge point (serving.costs)."""

import pytest

from packviz.serving.costs import (
    GPUS, Pricer, Work, arithmetic_intensity, decode_work, preset_cost_model, ridge_point, varlen_prefill_work,
)
from packviz.shapes import ModelShape, get_shape

# 1 layer, 1 head of dim 2, hidden 2, inter 3, vocab 5: 34 layer weights, 10 lm_head, 8 FLOPs per pair
TOY = ModelShape("toy", hidden=2, intermediate=3, layers=1, heads=1, kv_heads=1, head_dim=2, vocab=5)


def test_decode_work_by_hand():
    # 3 requests with 4 cached tokens: each new query sees 4 + itself, reads 4 K/V, writes 1
    assert decode_work(3, 4) == Work(tokens=3, lm_rows=3, pairs=15, kv_read=12, kv_write=3)
    with pytest.raises(ValueError, match="batch"):
        decode_work(0, 4)
    with pytest.raises(ValueError, match="context"):
        decode_work(1, -1)


def test_intensity_by_hand_and_as_the_pricer_counts():
    w = decode_work(3, 4)
    flops = 3 * 68 + 3 * 20 + 15 * 8                    # linear, lm_head rows, pairs
    weights = TOY.weight_bytes() - 5 * 2 * 2              # every stored weight but the embedding table, bf16
    kv = (12 + 3) * 2 * 1 * 1 * 2 * 2                    # tokens × K and V × layers × kv_heads × head_dim × 2 bytes
    assert arithmetic_intensity(w, TOY) == pytest.approx(flops / (weights + kv))
    assert arithmetic_intensity(w, TOY, weights=False) == pytest.approx(flops / kv)
    p = Pricer(TOY, preset_cost_model("h100"))
    for work in (w, varlen_prefill_work([5, 9]), decode_work(64, 1000)):
        assert arithmetic_intensity(work, TOY) == pytest.approx(p.flops(work) / p.bytes(work))


def test_prefill_is_compute_bound_and_decode_memory_bound_on_an_h100():
    ridge = ridge_point("h100")          # the lent H100's measured matmul over the datasheet bandwidth (none recorded)
    assert ridge == pytest.approx(GPUS["h100"].measured_flops.value / GPUS["h100"].peak_bytes_per_s)
    llama = get_shape("llama-3-8b")
    assert arithmetic_intensity(varlen_prefill_work([2048]), llama) > ridge
    # decode: intensity grows with the batch, but at a 1,024-token context it never reaches the
    # ridge -- the per-request KV reads bound it however many requests share the weights
    by_batch = [arithmetic_intensity(decode_work(b, 1024), llama) for b in (1, 8, 64, 512)]
    assert by_batch == sorted(by_batch) and by_batch[0] < 1.5
    limit = arithmetic_intensity(decode_work(1, 1024), llama, weights=False)
    assert by_batch[-1] < limit < ridge


def test_ridge_point_datasheet_and_bad_gpu():
    g, h = GPUS["a100"], GPUS["h100"]    # nothing measured on an A100: its datasheet, scaled as the H100 measured
    assert ridge_point("a100", measured=False) == g.peak_flops / g.peak_bytes_per_s
    assert ridge_point("a100") == pytest.approx(g.peak_flops * h.measured_flops.value / h.peak_flops / g.peak_bytes_per_s)
    with pytest.raises(ValueError, match="unknown GPU 'tpu'"):
        ridge_point("tpu")


def test_every_measured_preset_value_is_in_a_recorded_file():
    """A preset rate called measured names the file and key that hold it (and the value is there)."""
    import json

    from packviz.serving.calibration import RESULTS_DIR
    from packviz.serving.costs import copy_rate, matmul_rate, preset_cost_model

    found = 0
    for key, gpu in GPUS.items():
        for m in (gpu.measured_flops, gpu.measured_bytes_per_s):
            if m is None:
                continue
            data = json.loads((RESULTS_DIR / m.source).read_text())
            assert data[m.key] * m.scale == pytest.approx(m.value, rel=1e-12), (key, m)
            found += 1
        note = preset_cost_model(key).note
        assert ("measured (" in note) == (gpu.measured_flops is not None or gpu.measured_bytes_per_s is not None)
    assert found >= 1
    assert matmul_rate("h100")[1] == "measured (2026-11-26-h100-b/bench.json)"
    assert copy_rate("h100")[1] == "datasheet (no copy rate recorded yet)"
