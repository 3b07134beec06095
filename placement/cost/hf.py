"""Import a Hugging Face ``config.json`` as a `ModelSpec`.

Only the fields the cost model needs are read (DESIGN.md, "The cost model"); rope
settings, norms, biases, dropout and the like are ignored, as the cost model ignores
them. Each supported ``model_type`` has one reader in `_READERS`, a small function
from the config to `ModelSpec` fields; `_window_types` turns each family's way of
writing sliding windows into per-layer types, and `_quantized_bits` reads a
``quantization_config`` into weight bits with the per-group scales and zeros
counted. Anything the cost model cannot express is refused in one line naming it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from placement.cost.model import ModelSpec
from placement.errors import InputError

__all__ = ["spec_from_hf_config", "supported_model_types", "quantized_bits"]

# Storage dtype of the released weights -> bits per weight.
_DTYPE_BITS: dict[str, float] = {
    "float16": 16.0,
    "bfloat16": 16.0,
    "float32": 32.0,
}


class _Config:
    """A parsed config.json with typed, checked reads; messages name the key and the file."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data, self.where = data, where

    def int(self, key: str, default: int | None = None) -> int:
        """``data[key]`` as a positive integer; `default` when absent or null (required if None)."""
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise InputError(f"{self.where}: missing key `{key}` (model_type {self.data.get('model_type')!r})")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{self.where}: `{key}` must be a positive integer, got {value!r}")
        return value

    def first_int(self, keys: tuple[str, ...], default: int | None = None) -> int:
        """The first of `keys` the file has (old and new names of one field)."""
        for key in keys:
            if self.data.get(key) is not None:
                return self.int(key)
        return self.int(keys[0], default)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InputError(f"{self.where}: `{key}` must be true or false, got {value!r}")
        return value

    def unsupported(self, what: str) -> InputError:
        return InputError(f"{self.where}: {what} is not supported by the cost model "
                          "(write the model out as a models/*.yaml mapping, docs/cost-model.md)")


def _heads(c: _Config, kv_key: str = "num_key_value_heads") -> dict[str, Any]:
    """Layers, hidden, heads, key/value heads (checked to divide) and head_dim, Llama-style keys."""
    hidden, heads = c.int("hidden_size"), c.int("num_attention_heads")
    kv_heads = c.int(kv_key, heads)
    if heads % kv_heads:
        raise InputError(f"{c.where}: `{kv_key}` ({kv_heads}) must divide `num_attention_heads` ({heads}); "
                         "each key/value head serves the same number of query heads")
    return {"layers": c.int("num_hidden_layers"), "hidden": hidden, "heads": heads, "kv_heads": kv_heads,
            "head_dim": c.int("head_dim", hidden // heads), "vocab": c.int("vocab_size")}


def _llama(c: _Config, *, tied: bool = False, gated: bool = True) -> dict[str, Any]:
    """Llama-like decoders: SwiGLU/GeGLU FFN of ``intermediate_size`` (Llama, Mistral, Qwen2/3, Phi-3, Gemma, BitNet)."""
    return {**_heads(c), "ffn_hidden": c.int("intermediate_size"), "gated_ffn": gated,
            "tied_embeddings": c.flag("tie_word_embeddings", tied)}


def _gpt2(c: _Config) -> dict[str, Any]:
    hidden = c.int("n_embd")
    return {"layers": c.int("n_layer"), "hidden": hidden, "heads": c.int("n_head"), "kv_heads": c.int("n_head"),
            "head_dim": hidden // c.int("n_head"), "ffn_hidden": c.int("n_inner", 4 * hidden), "gated_ffn": False,
            "vocab": c.int("vocab_size"), "tied_embeddings": c.flag("tie_word_embeddings", True),
            "learned_positions": c.int("n_positions", 1024)}


def _phi(c: _Config) -> dict[str, Any]:
    """Phi-1/1.5/2: fc1/fc2 GELU MLP, attention and MLP in parallel on one layer norm."""
    return {**_llama(c, gated=False), "parallel_attention": True}


def _gpt_neox(c: _Config) -> dict[str, Any]:
    """GPT-NeoX / Pythia: dense_h_to_4h / dense_4h_to_h GELU MLP, parallel residual by default."""
    return {**_llama(c, gated=False), "parallel_attention": c.flag("use_parallel_residual", True)}


def _falcon(c: _Config) -> dict[str, Any]:
    """Falcon: MQA (``multi_query``) or ``num_kv_heads`` (new decoder architecture), 4D GELU MLP, tied."""
    hidden = c.first_int(("hidden_size", "n_embed"))
    heads = c.first_int(("num_attention_heads", "n_head"))
    if c.flag("new_decoder_architecture", False):
        kv_heads = c.first_int(("num_kv_heads", "n_head_kv"), heads)
    else:
        kv_heads = 1 if c.flag("multi_query", True) else heads
    if heads % kv_heads:
        raise InputError(f"{c.where}: `num_kv_heads` ({kv_heads}) must divide `num_attention_heads` ({heads})")
    return {"layers": c.first_int(("num_hidden_layers", "n_layer")), "hidden": hidden, "heads": heads,
            "kv_heads": kv_heads, "head_dim": hidden // heads, "ffn_hidden": c.int("ffn_hidden_size", 4 * hidden),
            "gated_ffn": False, "vocab": c.int("vocab_size"), "tied_embeddings": c.flag("tie_word_embeddings", True),
            "parallel_attention": c.flag("parallel_attn", True) or c.flag("new_decoder_architecture", False)}


def _opt(c: _Config) -> dict[str, Any]:
    """OPT: fc1/fc2 ReLU FFN of ``ffn_dim``, learned positions (2 rows of offset), tied."""
    hidden = c.int("hidden_size")
    if c.int("word_embed_proj_dim", hidden) != hidden:
        raise c.unsupported(f"`word_embed_proj_dim` ({c.data['word_embed_proj_dim']}) differing from `hidden_size` "
                            f"({hidden}) (OPT-350m's projected embeddings)")
    heads = c.int("num_attention_heads")
    return {"layers": c.int("num_hidden_layers"), "hidden": hidden, "heads": heads, "kv_heads": heads,
            "head_dim": hidden // heads, "ffn_hidden": c.int("ffn_dim"), "gated_ffn": False,
            "vocab": c.int("vocab_size"), "tied_embeddings": c.flag("tie_word_embeddings", True),
            # OPTLearnedPositionalEmbedding keeps max_position_embeddings + 2 rows (an offset of 2)
            "learned_positions": c.int("max_position_embeddings") + 2}


def _mixtral(c: _Config) -> dict[str, Any]:
    """Mixtral: every layer an MoE of ``num_local_experts`` SwiGLU experts of ``intermediate_size``, top-k."""
    width = c.int("intermediate_size")
    return {**_llama(c), "experts": c.int("num_local_experts"), "experts_per_token": c.int("num_experts_per_tok"),
            "expert_ffn_hidden": width}


def _qwen_moe(c: _Config, *, shared: bool) -> dict[str, Any]:
    """Qwen1.5/2-MoE (a gated shared expert) and Qwen3-MoE (none): every ``decoder_sparse_step`` = 1 layer an MoE."""
    if c.int("decoder_sparse_step", 1) != 1 or c.data.get("mlp_only_layers"):
        raise c.unsupported("`decoder_sparse_step` other than 1 or a non-empty `mlp_only_layers` (dense layers "
                            "among MoE layers; only the first layers may be dense)")
    values = {**_llama(c), "experts": c.int("num_experts"), "experts_per_token": c.int("num_experts_per_tok"),
              "expert_ffn_hidden": c.int("moe_intermediate_size")}
    if shared:
        values |= {"shared_ffn_hidden": c.int("shared_expert_intermediate_size"), "shared_expert_gate": True}
    return values


def _deepseek(c: _Config) -> dict[str, Any]:
    """DeepSeek-V2/V3: MLA attention, the first ``first_k_dense_replace`` layers dense, shared + routed experts."""
    if c.int("moe_layer_freq", 1) != 1:
        raise c.unsupported("`moe_layer_freq` other than 1 (dense layers among MoE layers)")
    heads, rope, nope = c.int("num_attention_heads"), c.int("qk_rope_head_dim"), c.int("qk_nope_head_dim")
    expert = c.int("moe_intermediate_size")
    shared = c.data.get("n_shared_experts") or 0
    return {"layers": c.int("num_hidden_layers"), "hidden": c.int("hidden_size"), "heads": heads, "kv_heads": 1,
            "head_dim": nope + rope, "ffn_hidden": c.int("intermediate_size"), "gated_ffn": True,
            "vocab": c.int("vocab_size"), "tied_embeddings": c.flag("tie_word_embeddings", False),
            "attention": "mla", "q_lora_rank": c.data.get("q_lora_rank") or 0, "kv_lora_rank": c.int("kv_lora_rank"),
            "qk_rope_head_dim": rope, "v_head_dim": c.int("v_head_dim"),
            "experts": c.int("n_routed_experts"), "experts_per_token": c.int("num_experts_per_tok"),
            "expert_ffn_hidden": expert, "shared_ffn_hidden": shared * expert,
            "dense_layers": c.data.get("first_k_dense_replace") or 0}


_READERS = {
    "gpt2": _gpt2,
    "llama": _llama,
    "mistral": _llama,
    "qwen2": _llama,
    "qwen3": _llama,
    "phi3": _llama,
    "bitnet": _llama,
    "gemma": lambda c: _llama(c, tied=True),
    "gemma2": lambda c: _llama(c, tied=True),
    "gemma3_text": lambda c: _llama(c, tied=True),
    "phi": _phi,
    "gpt_neox": _gpt_neox,
    "falcon": _falcon,
    "RefinedWeb": _falcon,
    "RefinedWebModel": _falcon,
    "opt": _opt,
    "mixtral": _mixtral,
    "qwen2_moe": lambda c: _qwen_moe(c, shared=True),
    "qwen3_moe": lambda c: _qwen_moe(c, shared=False),
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
}


def supported_model_types() -> list[str]:
    """The ``model_type`` values `spec_from_hf_config` understands, sorted."""
    return sorted(_READERS)


def _window_types(c: _Config, model_type: str, layers: int) -> dict[str, Any]:
    """Per-layer attention types and the window, from each family's way of writing them.

    An explicit ``layer_types`` list (newer transformers) wins. Otherwise: Mistral,
    Mixtral and Phi-3 apply ``sliding_window`` (when not null) to every layer; Qwen2/3
    only with ``use_sliding_window``, from layer ``max_window_layers`` on; Gemma 2
    slides on even layers; Gemma 3 on every layer but each ``sliding_window_pattern``-th.
    Engines cap a sliding layer's cache at its window, and so does the cost model.
    """
    window = c.data.get("sliding_window")
    explicit = c.data.get("layer_types")
    if explicit is not None:
        names = {"full_attention": "full", "sliding_attention": "sliding"}
        odd = sorted({t for t in explicit if t not in names}) if isinstance(explicit, list) else [explicit]
        if odd or len(explicit) != layers:
            raise c.unsupported(f"`layer_types` {odd or explicit!r} (only full_attention and sliding_attention, "
                                f"one per layer)")
        types = [names[t] for t in explicit]
    elif model_type in ("mistral", "mixtral", "phi3"):
        types = ["sliding"] * layers if window else []
    elif model_type.startswith("qwen"):
        first = c.int("max_window_layers", layers) if c.flag("use_sliding_window", False) else layers
        types = ["sliding" if i >= first else "full" for i in range(layers)] if first < layers else []
    elif model_type == "gemma2":
        types = ["sliding" if i % 2 == 0 else "full" for i in range(layers)]
    elif model_type == "gemma3_text":
        pattern = c.int("sliding_window_pattern", 6)
        types = ["full" if (i + 1) % pattern == 0 else "sliding" for i in range(layers)]
    else:
        types = []
    if "sliding" not in types:
        return {}
    return {"layer_types": tuple(types), "sliding_window": c.int("sliding_window")}


def quantized_bits(quantization: dict[str, Any], where: str = "quantization_config") -> float:
    """Bits per weight of a quantized checkpoint, its per-group scales and zeros counted.

    - AWQ: ``bits`` per weight plus, per ``group_size`` weights, a 16-bit scale and a
      ``bits``-wide zero (when ``zero_point``): ``bits + (16 + bits)/group``.
    - GPTQ: the same layout (a 16-bit scale and packed zeros per group; ``group_size: -1``,
      one scale per output row, adds a negligible fraction and is taken as 0).
    - bitsandbytes 4-bit (NF4/FP4): 4 bits plus a 32-bit absmax per block of 64; with
      double quantization an 8-bit absmax per 64 and a 32-bit constant per 256 blocks.
      8-bit (LLM.int8): 8 bits (its per-row scale is negligible).
    - FP8 with ``weight_block_size`` (DeepSeek-V3): 8 bits plus a 32-bit scale per block.
    - BitNet: ternary weights, ``log2 3 ≈ 1.58`` bits.

    Parameters
    ----------
    quantization : dict
        The config's ``quantization_config``.
    where : str
        For messages.

    Returns
    -------
    float
        Bits per weight of the quantized (linear) layers.

    Raises
    ------
    InputError
        For another ``quant_method``, naming it.

    Examples
    --------
    >>> quantized_bits({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True})
    4.15625
    """
    method = str(quantization.get("quant_method", "")).lower()
    if method in ("awq", "gptq"):
        bits = quantization.get("bits", quantization.get("w_bit"))
        group = quantization.get("group_size", quantization.get("q_group_size", 128))
        if not isinstance(bits, int) or not isinstance(group, int) or group == 0 or group < -1:
            raise InputError(f"{where}: {method} needs integer `bits` and `group_size`, got {bits!r}, {group!r}")
        zero = bits if quantization.get("zero_point", True) or method == "gptq" else 0
        return float(bits) if group == -1 else bits + (16 + zero) / group
    if method == "bitsandbytes":
        if quantization.get("load_in_8bit"):
            return 8.0
        if not quantization.get("load_in_4bit"):
            raise InputError(f"{where}: bitsandbytes with neither `load_in_4bit` nor `load_in_8bit`")
        if quantization.get("bnb_4bit_use_double_quant"):
            return 4 + 8 / 64 + 32 / (64 * 256)
        return 4 + 32 / 64
    if method == "fp8":
        block = quantization.get("weight_block_size") or [1, 1]
        return 8 + 32 / math.prod(block) if block != [1, 1] else 8.0
    if method == "bitnet":
        return round(math.log2(3), 2)
    raise InputError(f"{where}: `quant_method` {method!r} is not supported; supported are awq, gptq, "
                     "bitsandbytes, fp8, bitnet (or set weight_bits on the spec)")


def spec_from_hf_config(config: dict[str, Any] | str | Path, name: str | None = None) -> ModelSpec:
    """Build a `ModelSpec` from a Hugging Face ``config.json``.

    Supported ``model_type`` values: `supported_model_types` (Llama, Mistral,
    Mixtral, Qwen2/3 and their MoE variants, Phi-2/3, Gemma 1/2/3, GPT-2,
    GPT-NeoX/Pythia, Falcon, OPT, DeepSeek-V2/V3, BitNet). A multimodal config
    whose language model sits in ``text_config`` (Gemma 3) is read from there.
    Sliding windows become per-layer types (`_window_types`); a
    ``quantization_config`` becomes the weight bits of the layers
    (`quantized_bits`) while ``embed`` and ``lm_head`` keep the storage dtype.

    Parameters
    ----------
    config : dict, str or Path
        The parsed ``config.json``, the path of the file, or the path of a model
        folder that holds a ``config.json``.
    name : str, optional
        Name of the spec. Defaults to the last part of ``_name_or_path`` when the
        file has one, else the file's stem (or its folder's name for a file called
        ``config.json``), else the ``model_type``.

    Returns
    -------
    ModelSpec
        ``weight_bits`` comes from ``quantization_config`` when present, else from
        ``torch_dtype`` (or ``dtype``): 16 for float16 and bfloat16, 32 for float32,
        the `ModelSpec` default of 16 when the file has neither. ``kv_bits`` and
        ``activation_bits`` keep their defaults. ``published_params`` is None.

    Raises
    ------
    InputError
        If the file is missing or is not JSON, if ``model_type`` is missing or not
        supported, if a required key is missing or is not a positive integer, if
        ``torch_dtype`` or the quantization method is unknown, or if the config uses
        a feature the cost model cannot express. The message names the key and the file.

    See Also
    --------
    placement.cost.model.load_model : the shipped specs, by name.
    placement.cost.model.spec_from_mapping : a spec written out field by field.

    Notes
    -----
    Biases, norms (Qwen3's and Gemma's q/k norms included) and rotary settings are not
    counted, as everywhere in the cost model; learned position tables (GPT-2, OPT)
    are. DeepSeek-V3's multi-token-prediction layers are not part of the model.

    Examples
    --------
    >>> spec = spec_from_hf_config(
    ...     {
    ...         "model_type": "llama",
    ...         "num_hidden_layers": 32,
    ...         "hidden_size": 4096,
    ...         "num_attention_heads": 32,
    ...         "num_key_value_heads": 8,
    ...         "intermediate_size": 14336,
    ...         "vocab_size": 128256,
    ...         "tie_word_embeddings": False,
    ...         "torch_dtype": "bfloat16",
    ...     },
    ...     name="llama-3.1-8b",
    ... )
    >>> spec.kv_heads, spec.head_dim, spec.ffn_matrices
    (8, 128, 3)
    >>> spec.params
    8029995008
    """
    data, where = _read_config(config)
    model_type = data.get("model_type")
    if model_type is None:
        raise InputError(f"{where}: missing key `model_type`; supported model types are "
                         f"{', '.join(supported_model_types())}")
    if isinstance(data.get("text_config"), dict) and model_type not in _READERS:  # Gemma 3: the language model inside
        text = data["text_config"]
        data = {"torch_dtype": data.get("torch_dtype"), **text, "model_type": text.get("model_type", f"{model_type}_text")}
        model_type = data["model_type"]
    reader = _READERS.get(model_type)
    if reader is None:
        raise InputError(
            f"{where}: unsupported `model_type` {model_type!r}; supported model types are "
            f"{', '.join(supported_model_types())} (or write the model out as a models/*.yaml mapping)"
        )
    c = _Config(data, where)
    values = reader(c)
    values |= _window_types(c, model_type, values["layers"])
    values |= _precision(c)
    values["name"] = name if name is not None else _default_name(data, config)
    values["source"] = f"Hugging Face config.json ({where})"
    return ModelSpec(**values)


def _precision(c: _Config) -> dict[str, Any]:
    """``weight_bits`` (and ``embed_bits``, ``activation_bits``) from the dtype and the quantization config."""
    dtype_bits = _weight_bits(c.data, c.where)
    quantization = c.data.get("quantization_config")
    if quantization is None:
        return {} if dtype_bits is None else {"weight_bits": dtype_bits}
    if not isinstance(quantization, dict):
        raise InputError(f"{c.where}: `quantization_config` must be a mapping, got {quantization!r}")
    out: dict[str, Any] = {"weight_bits": quantized_bits(quantization, f"{c.where}: quantization_config"),
                           "embed_bits": dtype_bits or 16.0}
    if str(quantization.get("quant_method", "")).lower() == "bitnet":
        out["activation_bits"] = 8.0  # W1.58A8
    return out


def _weight_bits(data: dict[str, Any], where: str) -> float | None:
    """Bits per weight from ``torch_dtype`` (or ``dtype``); None when the file has neither."""
    key = "torch_dtype" if data.get("torch_dtype") is not None else "dtype"
    dtype = data.get(key)
    if dtype is None:
        return None
    bits = _DTYPE_BITS.get(str(dtype).removeprefix("torch."))
    if bits is None:
        raise InputError(
            f"{where}: unknown `{key}` {dtype!r}; known dtypes are {', '.join(sorted(_DTYPE_BITS))} "
            "(set weight_bits on the spec instead)"
        )
    return bits


def _read_config(config: dict[str, Any] | str | Path) -> tuple[dict[str, Any], str]:
    """The parsed config and a description of where it came from, for messages."""
    if isinstance(config, dict):
        return config, "config.json mapping"
    if not isinstance(config, (str, Path)):
        raise InputError(
            f"hf_config: expected a mapping or the path of a config.json, got {type(config).__name__}"
        )
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise InputError(f"hf_config: no file at {str(path)!r}; give the path of a Hugging Face config.json")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); give a Hugging Face config.json") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object of config fields, got {type(data).__name__}")
    return data, str(path)


def _default_name(data: dict[str, Any], config: dict[str, Any] | str | Path) -> str:
    """A spec name for a config given without one."""
    name_or_path = data.get("_name_or_path")
    if isinstance(name_or_path, str) and name_or_path.strip("/"):
        return name_or_path.rstrip("/").rsplit("/", 1)[-1]
    if isinstance(config, (str, Path)):
        path = Path(config)
        if path.is_dir():
            return path.resolve().name
        if path.stem != "config":
            return path.stem
        return path.resolve().parent.name
    return str(data["model_type"])
