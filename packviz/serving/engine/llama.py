"""Llama-3's forward over one ragged token stream, written out, on the weights of a transformers model.

torch only. :class:`Llama` reads the weights of a ``LlamaForCausalLM`` (random, or a local
checkpoint) and runs one serving step: T tokens from any number of sequences (decodes and
prefill chunks side by side), each with its own position, writing its K/V into the cache
and attending through an attention path of :mod:`packviz.serving.engine.attention`::

    x = embed(input_ids)                                    (T, hidden)
    for each layer:
        h = rms_norm(x)
        q, k, v = h @ W_qkv                                 (T, H, D), (T, Hkv, D), (T, Hkv, D)
        q, k = rope(q, positions), rope(k, positions)       position_ids restart at 0 per sequence
        cache.k[slot_mapping], cache.v[slot_mapping] = k, v      written in place
        x = x + attention(q, cache.k, cache.v) @ W_o        each query sees its own sequence only
        x = x + (silu(h2 @ W_gate) * (h2 @ W_up)) @ W_down   h2 = rms_norm(x)
    logits = rms_norm(x)[logits_rows] @ W_lm_head           (R, vocab): only rows that emit a token

The weights are the model's own tensors, not copies, with one change: each layer's q, k, v
projections become views into one fused (H·D + 2·Hkv·D, hidden) tensor, and gate and up into
one (2·intermediate, hidden) -- one matmul instead of three and two, as gpt-fast and vLLM do.
The transformers model keeps working unchanged (its parameters are views of the same values).
Random weights give the same speed as trained ones: speed depends on shapes, not values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def rope_parameters(config) -> dict:
    """The config's RoPE settings as one dict (transformers 5 ``rope_parameters``, or 4.x ``rope_theta`` +
    ``rope_scaling``)."""
    params = getattr(config, "rope_parameters", None)
    if params:
        return dict(params)
    return {**(getattr(config, "rope_scaling", None) or {}), "rope_theta": config.rope_theta}


def inv_freq(config) -> torch.Tensor:
    """RoPE's inverse frequencies (D/2,), fp32, with Llama-3.1's ``llama3`` scaling where the config asks.

    Default: θ^(-2i/D). ``llama3``: wavelengths longer than ``original_max / low_freq_factor``
    are divided by ``factor``, those shorter than ``original_max / high_freq_factor`` kept, and the
    band between blended smoothly (Meta's ``apply_scaling``).
    """
    p = rope_parameters(config)
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    freq = 1.0 / (p["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if p.get("rope_type", p.get("type", "default")) != "llama3":
        return freq
    factor, low, high = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    old = p["original_max_position_embeddings"]
    wavelen = 2 * math.pi / freq
    scaled = torch.where(wavelen > old / low, freq / factor, freq)
    smooth = (old / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return torch.where(medium, blended, scaled)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x²) + eps) · weight, the mean in fp32: (T, hidden) -> (T, hidden)."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on (T, heads, D) with per-token (T, 1, D) cos and sin: x·cos + rotate_half(x)·sin."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def fuse(module, names: tuple[str, ...]) -> torch.Tensor:
    """Concatenate the weights of ``module.<name>`` Linear layers into one tensor (rows stacked)
    and make each layer's weight a view into it: one matmul, the same values, no second copy.
    A module fused before (a second engine on the same model) is reused as it is."""
    layers = [getattr(module, n) for n in names]
    if any(layer.bias is not None for layer in layers):
        raise ValueError(f"{type(module).__name__} has biased projections; the engine supports Llama (no bias)")
    key = "packviz_fused_" + "_".join(names)
    fused = getattr(module, key, None)
    offsets = [0] + [layer.weight.shape[0] for layer in layers]
    if fused is not None and all(layer.weight.data_ptr() == fused[sum(offsets[:i + 1]):].data_ptr()
                                 for i, layer in enumerate(layers)):
        return fused
    fused = torch.cat([layer.weight.detach() for layer in layers])
    row = 0
    for layer in layers:
        rows = layer.weight.shape[0]
        layer.weight = torch.nn.Parameter(fused[row:row + rows], requires_grad=False)
        row += rows
    setattr(module, key, fused)
    return fused


MLP_SLICE = 16384
"""Tokens per MLP slice (one step of up to this many tokens runs its MLP in one piece)."""


@dataclass
class Layer:
    input_norm: torch.Tensor     # (hidden,)
    qkv: torch.Tensor            # (H·D + 2·Hkv·D, hidden)
    o: torch.Tensor              # (hidden, H·D)
    post_norm: torch.Tensor      # (hidden,)
    gate_up: torch.Tensor        # (2·intermediate, hidden)
    down: torch.Tensor           # (hidden, intermediate)


class Llama:
    """The forward of a transformers ``LlamaForCausalLM``'s weights over one ragged step.

    ``model``: the transformers model (its weights are shared, see the module docstring).
    :meth:`forward` takes a step's inputs (:class:`packviz.serving.engine.runner.StepInputs`),
    the KV cache and an attention path, and returns the logits of the rows that emit.
    """

    def __init__(self, model):
        cfg = model.config
        self.config = cfg
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.vocab = cfg.vocab_size
        self.device, self.dtype = model.device, model.dtype
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        self.lm_head = model.lm_head.weight
        self.layers = []
        with torch.no_grad():
            for block in inner.layers:
                a, m = block.self_attn, block.mlp
                self.layers.append(Layer(block.input_layernorm.weight, fuse(a, ("q_proj", "k_proj", "v_proj")),
                                         a.o_proj.weight, block.post_attention_layernorm.weight,
                                         fuse(m, ("gate_proj", "up_proj")), m.down_proj.weight))
        self.inv_freq = inv_freq(cfg).to(self.device)

    def rope_tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin (T, 1, D) for the (T,) positions, computed in fp32 then cast (as transformers does)."""
        freqs = positions[:, None].float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def attention_block(self, x, layer: Layer, index: int, cos, sin, step, cache, attend) -> torch.Tensor:
        t, hd, kvd = x.shape[0], self.heads * self.head_dim, self.kv_heads * self.head_dim
        q, k, v = F.linear(rms_norm(x, layer.input_norm, self.eps), layer.qkv).split((hd, kvd, kvd), dim=-1)
        q = rotate(q.view(t, self.heads, self.head_dim), cos, sin)
        k = rotate(k.view(t, self.kv_heads, self.head_dim), cos, sin)
        cache.write(index, step.slot_mapping, k, v.view(t, self.kv_heads, self.head_dim))
        out = attend(q, cache.k[index], cache.v[index], step)            # (T, H, D)
        return x + F.linear(out.reshape(t, hd), layer.o)

    def mlp_block(self, x, layer: Layer) -> torch.Tensor:
        """SwiGLU over slices of at most :data:`MLP_SLICE` tokens: a static batch's padded prefill
        (32 prompts × the longest) would otherwise hold a (T, 2·intermediate) activation of tens of GB."""
        h = rms_norm(x, layer.post_norm, self.eps)
        out = torch.empty_like(x) if x.shape[0] > MLP_SLICE else None
        for start in range(0, x.shape[0], MLP_SLICE):
            gate, up = F.linear(h[start:start + MLP_SLICE], layer.gate_up).chunk(2, dim=-1)
            y = F.linear(F.silu(gate) * up, layer.down)
            if out is None:
                return x + y
            out[start:start + MLP_SLICE] = y
        return x + out

    @torch.no_grad()
    def forward(self, step, cache, attend) -> torch.Tensor:
        """Logits (R, vocab) of the step's ``logits_rows``, after writing every token's K/V into ``cache``."""
        x = F.embedding(step.input_ids, self.embed)                    # (T, hidden)
        cos, sin = self.rope_tables(step.positions)
        for i, layer in enumerate(self.layers):
            x = self.mlp_block(self.attention_block(x, layer, i, cos, sin, step, cache, attend), layer)
        x = rms_norm(x[step.logits_rows], self.norm, self.eps)
        return F.linear(x, self.lm_head)
