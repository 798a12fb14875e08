"""Measuring: a timer, statistics, the matmul ceiling, and what ran where (device, versions, kernels).

Everything here is a small function a benchmark driver calls; nothing keeps state between calls
except :class:`SdpaRecorder`, which watches SDPA calls while it is entered.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import platform
import shutil
import subprocess
import time

import numpy as np

from ..checks import finite_floats, show


# ---------------------------------------------------------------------- time
class Timer:
    """Seconds of a block: CUDA events on a GPU (synchronised at both ends), ``perf_counter`` on CPU."""

    def __init__(self, device):
        import torch

        self.torch = torch
        self.cuda = torch.device(device).type == "cuda"
        self.seconds = None

    def __enter__(self):
        if self.cuda:
            self.torch.cuda.synchronize()
            self.start = self.torch.cuda.Event(enable_timing=True)
            self.end = self.torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1e3
        else:
            self.seconds = time.perf_counter() - self.t0
        return False


def stats(times) -> dict:
    """``median_s``, ``min_s``, ``max_s``, ``q1_s``, ``q3_s``, ``iqr_s`` of a list of seconds (``None`` when empty)."""
    t = finite_floats("times", times)
    if t.ndim != 1:
        raise ValueError(f"times must be a list of seconds, got {show(times)}")
    if not len(t):
        return dict.fromkeys(("median_s", "min_s", "max_s", "q1_s", "q3_s", "iqr_s"))
    q1, med, q3 = np.percentile(t, [25, 50, 75])
    return {"median_s": float(med), "min_s": float(t.min()), "max_s": float(t.max()),
            "q1_s": float(q1), "q3_s": float(q3), "iqr_s": float(q3 - q1)}


def matmul_ceiling(device, dtype, n: int = 8192, min_seconds: float = 1.0, groups: int = 3) -> dict:
    """The device's dense matmul rate: ``(n, n) @ (n, n)`` in ``dtype`` on random normal data.

    2·n³ FLOPs per product. ``groups`` measurements, each a loop of products lasting at least
    ``min_seconds`` (the count is set from a short trial), so clocks settle and one slow
    launch cannot move the number; the median group counts.
    """
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    c = torch.empty(n, n, device=device, dtype=dtype)

    def timed(iters: int) -> float:
        with Timer(device) as t:
            for _ in range(iters):
                torch.matmul(a, b, out=c)
        return t.seconds

    timed(3)  # warm-up: kernel selection, clocks
    iters = max(1, int(np.ceil(1.1 * min_seconds / max(timed(3) / 3, 1e-9))))
    rates, secs = [], []
    while len(secs) < groups:
        s = timed(iters)
        if s < min_seconds:  # the trial underestimated: lengthen the loop and measure again
            iters = int(np.ceil(1.1 * iters * min_seconds / max(s, 1e-9)))
            continue
        secs.append(s)
        rates.append(2 * n ** 3 * iters / s / 1e12)
    del a, b, c
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "iters_per_group": iters,
            "group_seconds": secs, "tflops_groups": rates, "tflops": float(np.median(rates))}


# ---------------------------------------------------------------------- where and with what
def git_commit() -> str | None:
    """The commit measured: ``PACKVIZ_GIT_COMMIT`` when set (a GPU copy may have no ``.git``), else HEAD."""
    env = os.environ.get("PACKVIZ_GIT_COMMIT")
    if env:
        return env.strip()
    root = pathlib.Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_changes() -> list[str] | None:
    """Tracked files that differ from the commit measured (``git status --porcelain`` lines, at most 50):
    ``PACKVIZ_GIT_CHANGES`` when set (comma-separated, or empty for a clean tree: a GPU copy may have no
    ``.git``, so the caller says what it sent), else git's own answer; ``None`` when neither knows."""
    env = os.environ.get("PACKVIZ_GIT_CHANGES")
    if env is not None:
        return [c.strip() for c in env.split(",") if c.strip()]
    root = pathlib.Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in out.stdout.splitlines()][:50] if out.returncode == 0 else None


def git_dirty() -> bool | None:
    """Uncommitted changes to tracked files (:func:`git_changes`; ``None`` when unknown)."""
    changes = git_changes()
    return None if changes is None else bool(changes)


NVIDIA_SMI_FIELDS = ("name", "driver_version", "pstate", "clocks.sm", "clocks.mem", "clocks.max.sm",
                     "clocks.max.mem", "power.draw", "power.limit", "temperature.gpu", "utilization.gpu")


def nvidia_smi() -> dict | None:
    """The GPU's name, driver, clocks (MHz), power (W) and temperature now, from ``nvidia-smi`` (``None`` without it)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    if out.returncode != 0 or not out.stdout.strip():
        return {"error": (out.stderr or out.stdout).strip()[:300]}
    values = [v.strip() for v in out.stdout.strip().splitlines()[0].split(",")]
    return dict(zip(NVIDIA_SMI_FIELDS, values))


def device_info(device) -> dict:
    """What the run runs on: GPU name, capability, memory, CUDA; or the CPU's model and threads."""
    import torch

    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r:.80}; use e.g. cpu, cuda, cuda:0") from None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": p.name, "capability": list(torch.cuda.get_device_capability(device)),
                "memory_bytes": int(p.total_memory), "multiprocessors": int(p.multi_processor_count),
                "cuda": torch.version.cuda}
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return {"type": device.type, "name": name, "threads": torch.get_num_threads(), "cores": os.cpu_count()}


def versions() -> dict:
    """Python, torch, transformers, numpy, packviz, triton, flash-attn and cuDNN versions (``None``: absent)."""
    import numpy
    import torch
    import transformers

    from .. import __version__

    v = {"python": platform.python_version(), "torch": torch.__version__,
         "transformers": transformers.__version__, "numpy": numpy.__version__, "packviz": __version__,
         "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    for mod in ("triton", "flash_attn"):  # triton compiles flex; flash_attn backs "flash"
        try:
            v[mod] = getattr(__import__(mod), "__version__", "?")
        except Exception:  # noqa: BLE001 -- absent, or a broken build
            v[mod] = None
    return v


def sdpa_settings() -> dict:
    """SDPA's priority order and which of its backends are enabled (the order it tries them in)."""
    import torch
    from torch.nn.attention import SDPBackend

    try:
        order = [SDPBackend(int(b)).name for b in torch._C._get_sdp_priority_order()]
    except (AttributeError, ValueError, RuntimeError):
        order = None
    cuda = torch.backends.cuda
    enabled = {"flash": cuda.flash_sdp_enabled(), "efficient": cuda.mem_efficient_sdp_enabled(),
               "cudnn": cuda.cudnn_sdp_enabled(), "math": cuda.math_sdp_enabled()}
    return {"priority_order": order, "enabled": enabled}


# ---------------------------------------------------------------------- which kernel ran
class SdpaRecorder:
    """While entered, records the kernel SDPA picks for each ``scaled_dot_product_attention`` call.

    Wraps ``torch.nn.functional.scaled_dot_product_attention`` (transformers looks it up at
    call time) and asks ``torch._fused_sdp_choice`` -- the dispatcher SDPA itself uses -- which
    backend those arguments get: ``FLASH_ATTENTION``, ``EFFICIENT_ATTENTION``,
    ``CUDNN_ATTENTION`` or ``MATH``. ``calls`` holds one dict per call (shapes, mask, is_causal,
    enable_gqa, kernel); :meth:`summary` the distinct ones.
    """

    def __init__(self, max_calls: int = 4):
        self.calls: list[dict] = []
        self.max_calls = max_calls

    def __enter__(self):
        import torch
        import torch.nn.functional as F

        self._F, self._orig = F, F.scaled_dot_product_attention

        def wrapped(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
            if len(self.calls) < self.max_calls:
                self.calls.append(describe_sdpa_call(torch, q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa))
            return self._orig(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                              scale=scale, enable_gqa=enable_gqa)

        F.scaled_dot_product_attention = wrapped
        return self

    def __exit__(self, *exc):
        self._F.scaled_dot_product_attention = self._orig
        return False

    def summary(self) -> str | None:
        """The kernels seen, e.g. ``"FLASH_ATTENTION (is_causal, enable_gqa)"``; ``None`` if SDPA never ran."""
        seen = dict.fromkeys(c["text"] for c in self.calls)
        return "; ".join(seen) or None


def describe_sdpa_call(torch, q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa) -> dict:
    """One SDPA call: its shapes, mask, flags and the backend ``torch._fused_sdp_choice`` picks for them."""
    from torch.nn.attention import SDPBackend

    try:
        choice = SDPBackend(int(torch._fused_sdp_choice(q, k, v, attn_mask, dropout_p, is_causal, scale=scale,
                                                        enable_gqa=enable_gqa))).name
    except Exception as e:  # noqa: BLE001 -- a torch without this private helper: say so, do not fail
        choice = f"unknown ({type(e).__name__})"
    mask = None if attn_mask is None else f"{tuple(attn_mask.shape)} {str(attn_mask.dtype).replace('torch.', '')}"
    flags = [f for f, on in (("is_causal", is_causal), ("enable_gqa", enable_gqa)) if on]
    flags += [f"mask {mask}"] if mask else []
    return {"kernel": choice, "q": list(q.shape), "k": list(k.shape), "mask": mask, "is_causal": bool(is_causal),
            "enable_gqa": bool(enable_gqa), "text": f"{choice} ({', '.join(flags) or 'no flags'})"}
