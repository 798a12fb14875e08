"""Model shapes: one registry for the Llama-3 table, the tiny CPU presets and configs. numpy-free.

A :class:`ModelShape` holds the dimensions that set a Llama-style decoder's FLOPs, weight
bytes and KV-cache bytes. Where they come from:

* :data:`MODELS` -- the Llama-3 family (meta-llama/llama-models ``sku_list.py``; published
  ``config.json`` files);
* :data:`PRESETS` -- tiny Llama-3-architecture shapes that run on a CPU in milliseconds;
* :func:`shape_from_config` -- a transformers ``LlamaConfig`` (or any object with its
  attribute names), and :func:`shape_from_config_file` -- a ``config.json`` file or a
  checkpoint directory holding one.

:func:`get_shape` accepts any of these (a name, a shape, a config)::

    >>> s = get_shape("llama-3-8b")
    >>> s.total_params(), s.kv_bytes_per_token()       # weights; KV-cache bytes per token (bf16)
    (8030261248, 131072)
    >>> get_shape("tiny").layers
    2

Every value is validated once, here: a config with ``num_attention_heads: 0`` or a
``config.json`` that is not a JSON object is refused with the file and the key named.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import pathlib
from dataclasses import dataclass

from .checks import show

_INT_FIELDS = ("hidden", "intermediate", "layers", "heads", "kv_heads", "head_dim", "vocab", "max_position")


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a Llama-style decoder that set its FLOPs (and weight bytes).

    ``head_dim`` is explicit: Llama-3.2-1B has hidden 2048 = 32 heads × 64.
    ``rope_parameters`` follows transformers 5's ``LlamaConfig.rope_parameters`` dict.
    """

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int = 128256
    tied_embeddings: bool = False
    max_position: int = 8192
    rope_parameters: dict | None = dataclasses.field(default=None, compare=False, hash=False)
    rms_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for f in _INT_FIELDS:
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
                raise ValueError(f"ModelShape.{f} must be a positive integer, got {show(v)}")
            object.__setattr__(self, f, int(v))
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")

    # -- parameter counts --------------------------------------------------------
    @property
    def layer_params(self) -> int:
        """Matmul weights of one decoder layer: q, k, v, o projections and the SwiGLU MLP."""
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return q + kv + o + mlp

    @property
    def lm_head_params(self) -> int:
        return self.hidden * self.vocab

    def params(self, lm_head: bool = True) -> int:
        """Matmul weights a token passes through: ``layers · layer_params`` (+ lm_head).

        This is the P of ``linear FLOPs = 2·P per token``. Not counted: the embedding
        table (a lookup, no FLOPs) and the RMSNorm weights (no matmul).
        """
        return self.layers * self.layer_params + (self.lm_head_params if lm_head else 0)

    def total_params(self) -> int:
        """Every stored weight: matmuls, embedding (once if tied), RMSNorms. 8,030,261,248 for Llama-3-8B."""
        norms = (2 * self.layers + 1) * self.hidden
        embed = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.params(lm_head=True) + embed + norms

    def weight_bytes(self, bytes_per_param: int = 2) -> int:
        """Bytes of all weights (bf16 by default)."""
        return self.total_params() * bytes_per_param

    # -- per-unit costs ------------------------------------------------------------
    @property
    def linear_flops_per_token(self) -> int:
        """2 · params() without lm_head: one token through every layer's matmuls."""
        return 2 * self.params(lm_head=False)

    @property
    def lm_head_flops_per_token(self) -> int:
        return 2 * self.lm_head_params

    def kv_bytes_per_token(self, bytes_per_param: int = 2) -> int:
        """KV-cache bytes one token holds: K and V, every layer, ``kv_heads · head_dim`` each (bf16 default).

        131,072 bytes (128 KiB) for Llama-3-8B: GQA keeps 8 KV heads for 32 query heads.
        """
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_param

    @property
    def attention_flops_per_pair(self) -> int:
        """4 · heads · head_dim · layers: QKᵀ (2·d) and AV (2·d), every query head, every layer."""
        return 4 * self.heads * self.head_dim * self.layers

    def config_kwargs(self) -> dict:
        """Keyword arguments for ``transformers.LlamaConfig`` (transformers >= 5 names)."""
        rope = dict(self.rope_parameters) if self.rope_parameters else {"rope_type": "default", "rope_theta": 500000.0}
        return dict(hidden_size=self.hidden, intermediate_size=self.intermediate,
                    num_hidden_layers=self.layers, num_attention_heads=self.heads,
                    num_key_value_heads=self.kv_heads, head_dim=self.head_dim, vocab_size=self.vocab,
                    tie_word_embeddings=self.tied_embeddings, max_position_embeddings=self.max_position,
                    rms_norm_eps=self.rms_norm_eps, rope_parameters=rope)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _llama3_rope(factor: float) -> dict:
    return {"rope_type": "llama3", "rope_theta": 500000.0, "factor": factor, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


_DEFAULT_ROPE = {"rope_type": "default", "rope_theta": 500000.0}

MODELS: dict[str, ModelShape] = {
    "llama-3-8b": ModelShape("llama-3-8b", 4096, 14336, 32, 32, 8, 128, max_position=8192,
                             rope_parameters=_DEFAULT_ROPE),
    "llama-3.1-8b": ModelShape("llama-3.1-8b", 4096, 14336, 32, 32, 8, 128, max_position=131072,
                               rope_parameters=_llama3_rope(8.0)),
    "llama-3.2-1b": ModelShape("llama-3.2-1b", 2048, 8192, 16, 32, 8, 64, tied_embeddings=True,
                               max_position=131072, rope_parameters=_llama3_rope(32.0)),
    "llama-3.2-3b": ModelShape("llama-3.2-3b", 3072, 8192, 28, 24, 8, 128, tied_embeddings=True,
                               max_position=131072, rope_parameters=_llama3_rope(32.0)),
    "llama-3-70b": ModelShape("llama-3-70b", 8192, 28672, 80, 64, 8, 128, max_position=8192,
                              rope_parameters=_DEFAULT_ROPE),
}
"""Llama-3 family shapes (meta-llama/llama-models ``sku_list.py``; published config.json files)."""

PRESETS: dict[str, ModelShape] = {
    "tiny": ModelShape("tiny", hidden=64, intermediate=224, layers=2, heads=4, kv_heads=2, head_dim=16,
                       vocab=256, max_position=8192, rope_parameters=_DEFAULT_ROPE),
    "tiny-3.2": ModelShape("tiny-3.2", hidden=64, intermediate=224, layers=2, heads=4, kv_heads=2, head_dim=16,
                           vocab=256, tied_embeddings=True, max_position=131072,
                           rope_parameters=_llama3_rope(32.0)),
    "small": ModelShape("small", hidden=256, intermediate=896, layers=4, heads=8, kv_heads=2, head_dim=32,
                        vocab=2048, max_position=8192, rope_parameters=_DEFAULT_ROPE),
}
"""Tiny Llama-3-architecture shapes for CPU (GQA, RoPE theta 500k; ``tiny-3.2`` ties embeddings
and uses Llama-3.1/3.2 ``llama3`` RoPE scaling)."""

NAMES = tuple(MODELS) + tuple(PRESETS)
"""Every name :func:`get_shape` knows: the Llama-3 models, then the CPU presets."""


def get_shape(name_or_shape) -> ModelShape:
    """A :class:`ModelShape` from a name (:data:`MODELS` or :data:`PRESETS`, any case), a shape, or a config."""
    if isinstance(name_or_shape, ModelShape):
        return name_or_shape
    if isinstance(name_or_shape, str):
        key = name_or_shape.strip().lower()
        found = MODELS.get(key) or PRESETS.get(key)
        if found is None:
            raise ValueError(f"unknown model {name_or_shape!r}; choose one of {', '.join(NAMES)}, "
                             "or give a config.json")
        return found
    if hasattr(name_or_shape, "hidden_size"):
        return shape_from_config(name_or_shape)
    raise ValueError(f"expected a model name, a ModelShape or a LlamaConfig, got {type(name_or_shape).__name__}")


_CONFIG_KEYS = (("hidden", "hidden_size"), ("intermediate", "intermediate_size"),
                ("layers", "num_hidden_layers"), ("heads", "num_attention_heads"), ("vocab", "vocab_size"))


def _config_int(cfg, key: str, where: str, required: bool = True):
    """An integer attribute of a config, >= 1, else ``ValueError`` naming ``where`` and ``key``."""
    v = getattr(cfg, key, None)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
        what = "missing" if v is None else f"{show(v)}"
        raise ValueError(f"{where}: {key} is {what}; it must be a positive integer")
    return int(v)


def shape_from_config(cfg, name: str | None = None, where: str = "config") -> ModelShape:
    """A :class:`ModelShape` from a transformers ``LlamaConfig`` (read by attribute, no import).

    ``where`` names the source in error messages (a file path). A key that is missing, zero,
    negative or not an integer is refused by name; so is ``hidden_size`` not divisible by the
    heads when ``head_dim`` is not given.
    """
    v = {f: _config_int(cfg, key, where) for f, key in _CONFIG_KEYS}
    kv = _config_int(cfg, "num_key_value_heads", where, required=False) or v["heads"]
    head_dim = _config_int(cfg, "head_dim", where, required=False)
    if head_dim is None:
        if v["hidden"] % v["heads"]:
            raise ValueError(f"{where}: hidden_size {v['hidden']} is not divisible by num_attention_heads "
                             f"{v['heads']}; give head_dim")
        head_dim = v["hidden"] // v["heads"]
    if v["heads"] % kv:
        raise ValueError(f"{where}: num_attention_heads {v['heads']} is not a multiple of "
                         f"num_key_value_heads {kv}")
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None)
    if name is None:
        name = getattr(cfg, "name_or_path", "") or getattr(cfg, "_name_or_path", "") or "config"
    max_pos = _config_int(cfg, "max_position_embeddings", where, required=False) or 8192
    eps = getattr(cfg, "rms_norm_eps", None)
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0):
        raise ValueError(f"{where}: rms_norm_eps is {show(eps)}; it must be a number > 0")
    return ModelShape(
        name=name, hidden=v["hidden"], intermediate=v["intermediate"], layers=v["layers"], heads=v["heads"],
        kv_heads=kv, head_dim=head_dim, vocab=v["vocab"],
        tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)), max_position=max_pos,
        rope_parameters=dict(rope) if isinstance(rope, dict) else None,
        rms_norm_eps=float(eps) if eps is not None else 1e-5,
    )


def shape_from_config_file(path) -> ModelShape:
    """A :class:`ModelShape` from a ``config.json`` file, or a checkpoint directory holding one.

    Refused with the file named: a missing file, text that is not UTF-8 JSON, JSON that is not
    an object, a ``model_type`` other than ``"llama"`` (when given), and every bad key of
    :func:`shape_from_config`.
    """
    path = pathlib.Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{file}: no such config file" + (" (the directory has no config.json)" if path.is_dir() else ""))
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{file}: not UTF-8 text; expected a JSON config") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except OSError as e:
        raise ValueError(f"{file}: cannot read ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file}: the JSON is a {type(data).__name__}, not an object of config keys")
    model_type = data.get("model_type", "llama")
    if model_type != "llama":
        raise ValueError(f"{file}: model_type is {show(model_type)}; packviz handles Llama configs only")
    return shape_from_config(_Namespace(data), name=str(path), where=str(file))


class _Namespace:
    """Attribute access over a dict (a config.json read as a config object)."""

    def __init__(self, data: dict):
        self.__dict__.update(data)
