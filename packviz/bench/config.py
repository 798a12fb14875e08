"""What a benchmark run depends on: the configuration, its validation, the smoke preset. No torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..attention import METHODS
from ..checks import nonnegative_int, one_of, positive_float, positive_int

SCENARIOS = ("trace", "offline", "seed", "uniform")
"""``trace``: windows of B consecutive real requests (serving-fair); ``offline``: the same
sample packed whole by best-fit decreasing (training-style); ``seed``: the interview mix of
~50 and ~4,000-token prompts; ``uniform``: the control (equal lengths: nothing to win)."""


@dataclass(frozen=True)
class BenchConfig:
    """Everything a run depends on (written into the results)."""

    model: str = "llama-3-8b"
    checkpoint: str | None = None
    device: str | None = None  # default: cuda if available, else cpu
    dtype: str | None = None  # default: bfloat16 on cuda, float32 on cpu
    pack_len: int = 8192  # C: rows of dense/flex, and the longest prompt (longer ones are clipped)
    batch_size: int = 32  # B: requests per forward (a window / a padded batch)
    scenarios: tuple = SCENARIOS
    methods: tuple | None = None  # None: every available method (flex not on CPU)
    repeats: int = 3
    warmup: int = 1  # untimed whole passes per method and scenario
    trace_n: int = 64  # requests of the trace sample: trace_n // batch_size windows
    trace_scale: float = 1.0  # multiply the trace's lengths (smoke: shorter prompts)
    seed_n: int = 32
    seed_short: int = 50
    seed_long: int = 4000
    uniform_n: int = 32
    uniform_len: int = 2048
    seed: int = 0
    deadline: float | None = None  # seconds from the start of the run: no step starts that would not end
    ceiling_n: int = 8192  # the matmul ceiling's n × n @ n × n
    ceiling_seconds: float = 1.0  # each ceiling measurement runs at least this long
    tile: tuple | None = (128, 128)  # also price the causal kernels in whole (block_q, block_k) tiles (None: off)
    cpu_threads: int | None = None  # torch threads on CPU (None: leave as is)
    cpu_varlen_reference: bool = False  # on CPU, run varlen through the reference loop (plumbing only)
    check_sequences: int = 4
    check_tokens: int = 256
    progress: bool = True
    png: bool = True
    smoke: bool = False

    def __post_init__(self) -> None:
        validate(self)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["scenarios"] = list(self.scenarios)
        d["methods"] = list(self.methods) if self.methods is not None else None
        d["tile"] = list(self.tile) if self.tile else None
        return d


def validate(cfg: BenchConfig) -> None:
    """``ValueError`` naming the first bad setting."""
    if not isinstance(cfg, BenchConfig):
        raise TypeError(f"cfg must be a BenchConfig (packviz.bench.config), got {type(cfg).__name__}")
    for m in cfg.methods or ():
        one_of("method", m, METHODS)
    if not cfg.scenarios:
        raise ValueError(f"scenarios is empty; choose from {', '.join(SCENARIOS)}")
    for s in cfg.scenarios:
        one_of("scenario", s, SCENARIOS)
    for k in ("pack_len", "batch_size", "repeats", "trace_n", "seed_n", "seed_short", "seed_long", "uniform_n",
              "uniform_len", "ceiling_n", "check_sequences", "check_tokens"):
        positive_int(k, getattr(cfg, k))
    for k in ("warmup", "seed"):
        nonnegative_int(k, getattr(cfg, k))
    positive_float("trace_scale", cfg.trace_scale)
    positive_float("ceiling_seconds", cfg.ceiling_seconds)
    if cfg.deadline is not None:
        positive_float("deadline", cfg.deadline)
    if cfg.cpu_threads is not None:
        positive_int("cpu_threads", cfg.cpu_threads)
    if cfg.tile is not None:
        if len(cfg.tile) != 2:
            raise ValueError(f"tile must be (block_q, block_k), got {cfg.tile!r}")
        for v in cfg.tile:
            positive_int("tile", v)


def smoke_config(**overrides) -> BenchConfig:
    """A tiny CPU configuration that runs every step of a real run in seconds.

    The varlen method runs through the CPU reference loop (it checks the plumbing of the 1-D
    stream; its timings mean nothing), flex is left out (it compiles for tens of seconds on
    CPU) unless ``methods`` asks for it.
    """
    kw = dict(model="tiny", device="cpu", dtype="float32", pack_len=256, batch_size=4,
              methods=None, repeats=2, warmup=1, trace_n=8, trace_scale=1 / 16,
              seed_n=8, seed_short=12, seed_long=240, uniform_n=8, uniform_len=64,
              ceiling_n=256, ceiling_seconds=0.05, tile=(16, 16), check_sequences=3,
              check_tokens=32, smoke=True, cpu_varlen_reference=True,
              cpu_threads=1)  # one thread: tiny ops gain nothing from more, and a busy core stalls them
    kw.update(overrides)
    return BenchConfig(**kw)
