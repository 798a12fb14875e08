"""Serving: one scheduler, two clocks -- a numpy simulator that prices its steps and a small
PyTorch engine that executes them on a real Llama-3.

The numpy part imports no torch, transformers or matplotlib (a replay starts fast, runs anywhere):

* :mod:`~packviz.serving.scheduler` -- the four policies as a scheduler that emits a step plan
* :mod:`~packviz.serving.costs` -- the work of one forward step and its roofline time; GPU presets
* :mod:`~packviz.serving.simulator` -- the scheduler's steps priced (decode spans in closed form)
* :mod:`~packviz.serving.metrics` -- throughput, latency percentiles, waste, the two utilisations
* :mod:`~packviz.serving.sweep` -- load sweeps, saturation and capacity under an SLO
* :mod:`~packviz.serving.calibration` -- costs fitted to recorded step timings; recorded runs

With torch (imported only when used):

* :mod:`~packviz.serving.engine` -- the scheduler's steps executed: a Llama-3 forward over one
  ragged token stream, a KV cache read in place, CUDA graphs for decode steps (:func:`run_engine`)
* :mod:`~packviz.serving.stepcost` -- single steps timed on that engine (the calibration grid)
* :mod:`~packviz.serving.hf` -- transformers' ``generate`` and continuous batching, for comparison

>>> from packviz.serving import simulate, summary
>>> s = summary(simulate(policy="continuous"))           # the shipped trace, Llama-3-8B, H100 preset
>>> s["completed"], s["decode_slot_steps"] == s["decode_useful_steps"]
(19366, True)
"""

from .calibration import cost_model
from .costs import GPU_CHOICES, GPUS, CostModel, preset_cost_model
from .metrics import format_table, summary
from .scheduler import ENGINE_CONFIGS, POLICIES, ServeConfig, StepPlan, make_scheduler
from .simulator import ARRIVALS, SimResult, simulate
from .sweep import (SLO_ITL_P99_S, SLO_TTFT_P99_S, budget_sweep, capacity, capacity_table, load_sweep,
                    saturation_rate_scale)


def run_engine(model, trace, policy: str = "continuous", seed: int = 0, **serve_config):
    """Serve ``trace`` under ``policy`` on a real ``LlamaForCausalLM``: :func:`packviz.serving.engine.run_engine`
    (imported here, on first use, so that this package needs no torch until an engine runs)."""
    from .engine import run_engine as run

    return run(model, trace, policy, seed=seed, **serve_config)


__all__ = ["ARRIVALS", "ENGINE_CONFIGS", "GPUS", "GPU_CHOICES", "POLICIES", "SLO_ITL_P99_S", "SLO_TTFT_P99_S",
           "CostModel", "ServeConfig", "SimResult", "StepPlan", "budget_sweep", "capacity", "capacity_table", "cost_model",
           "format_table", "load_sweep", "make_scheduler",
           "preset_cost_model", "run_engine", "saturation_rate_scale", "simulate", "summary"]
