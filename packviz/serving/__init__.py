"""Serving simulator: a request trace replayed under static, static-packed, continuous and chunked batching.

numpy only (no torch, transformers or matplotlib): a replay starts fast and runs anywhere.
Real engines (transformers' ``generate`` and continuous batching) are driven from
:mod:`packviz.engines`, never from here.

* :mod:`~packviz.serving.costs` -- the work of one forward step and its roofline time; GPU presets
* :mod:`~packviz.serving.policies` -- the four policies, event by event
* :mod:`~packviz.serving.metrics` -- throughput, latency percentiles, waste, the two utilisations
* :mod:`~packviz.serving.sweep` -- load sweeps, saturation and capacity under an SLO
* :mod:`~packviz.serving.calibration` -- costs fitted to a recorded GPU calibration; recorded runs

>>> from packviz.serving import simulate, summary
>>> s = summary(simulate(policy="continuous"))           # the shipped trace, Llama-3-8B, H100 preset
>>> s["completed"], s["decode_slot_steps"] == s["decode_useful_steps"]
(19366, True)
"""

from .costs import GPU_CHOICES, GPUS, CostModel, cost_model, preset_cost_model
from .metrics import format_table, summary
from .policies import ARRIVALS, POLICIES, ServeConfig, SimResult, simulate
from .sweep import SLO_TTFT_P99_S, capacity, load_sweep, saturation_rate_scale

__all__ = ["ARRIVALS", "GPUS", "GPU_CHOICES", "POLICIES", "SLO_TTFT_P99_S", "CostModel", "ServeConfig",
           "SimResult", "capacity", "cost_model", "format_table", "load_sweep", "preset_cost_model",
           "saturation_rate_scale", "simulate", "summary"]
