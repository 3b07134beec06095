"""Import a Hugging Face ``config.json`` as a `ModelSpec`.

Only the fields the cost model needs are read (DESIGN.md, "The cost model"); rope
settings, norms, biases, dropout and the like are ignored, as the cost model ignores
them. Each supported ``model_type`` has one row in `_FAMILIES`: the key of each
architecture field, whether the FFN is gated, and the default of
``tie_word_embeddings`` that its ``transformers`` config class uses when the file
leaves it out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from placement.cost.model import ModelSpec
from placement.errors import InputError

__all__ = ["spec_from_hf_config", "supported_model_types"]


@dataclass(frozen=True)
class _Family:
    """How one ``model_type`` names the architecture fields in its ``config.json``."""

    layers: str
    hidden: str
    heads: str
    kv_heads: str | None  # None: plain multi-head attention, K = H
    ffn_hidden: str
    gated_ffn: bool
    tied_default: bool  # the transformers config class default of tie_word_embeddings
    ffn_default_factor: int | None = None  # FFN width when `ffn_hidden` is absent: factor * D


_LLAMA_LIKE = _Family(
    layers="num_hidden_layers",
    hidden="hidden_size",
    heads="num_attention_heads",
    kv_heads="num_key_value_heads",
    ffn_hidden="intermediate_size",
    gated_ffn=True,  # SwiGLU: gate_proj, up_proj, down_proj (Phi-3 fuses gate and up)
    tied_default=False,
)

_FAMILIES: dict[str, _Family] = {
    "gpt2": _Family(
        layers="n_layer",
        hidden="n_embd",
        heads="n_head",
        kv_heads=None,
        ffn_hidden="n_inner",
        gated_ffn=False,
        tied_default=True,
        ffn_default_factor=4,  # n_inner null or absent: 4 * n_embd
    ),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "phi3": _LLAMA_LIKE,
}

# Storage dtype of the released weights -> bits per weight.
_DTYPE_BITS: dict[str, float] = {
    "float16": 16.0,
    "bfloat16": 16.0,
    "float32": 32.0,
}


def supported_model_types() -> list[str]:
    """The ``model_type`` values `spec_from_hf_config` understands, sorted."""
    return sorted(_FAMILIES)


def spec_from_hf_config(config: dict[str, Any] | str | Path, name: str | None = None) -> ModelSpec:
    """Build a `ModelSpec` from a Hugging Face ``config.json``.

    Supported ``model_type`` values are ``gpt2``, ``llama``, ``mistral``, ``qwen2``
    and ``phi3``. GPT-2 reads ``n_layer``, ``n_embd``, ``n_head``, ``n_inner``
    (null or absent means ``4 * n_embd``) and ``vocab_size``, with a plain FFN and
    tied embeddings unless ``tie_word_embeddings`` says otherwise. The others read
    ``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``,
    ``num_key_value_heads`` (absent means ``num_attention_heads``),
    ``intermediate_size``, ``head_dim`` (absent or null means
    ``hidden_size // num_attention_heads``) and ``vocab_size``, with a gated
    (SwiGLU) FFN and untied embeddings unless ``tie_word_embeddings`` says
    otherwise (Qwen2.5-0.5B and Llama 3.2 say true).

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
        ``weight_bits`` comes from ``torch_dtype`` (or ``dtype``, its newer name):
        16 for float16 and bfloat16, 32 for float32, and the `ModelSpec` default
        of 16 when the file has neither. ``kv_bits`` and ``activation_bits`` keep
        their defaults; change them with `ModelSpec.replace`.
        ``published_params`` is None.

    Raises
    ------
    InputError
        If the file is missing or is not JSON, if ``model_type`` is missing or not
        supported, if a required key is missing or is not a positive integer, or
        if ``torch_dtype`` is unknown. The message names the key and the file.

    See Also
    --------
    placement.cost.model.load_model : the shipped specs, by name.
    placement.cost.model.spec_from_mapping : a spec written out field by field.

    Notes
    -----
    Biases (Qwen2's QKV biases, GPT-2's), norms and position embeddings are not
    counted, as everywhere in the cost model. Mistral's sliding window is ignored:
    the KV cache is taken to grow with the whole context.

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
    family = _family(data, where)
    heads = _positive_int(data, family.heads, where)
    hidden = _positive_int(data, family.hidden, where)
    values = {
        "name": name if name is not None else _default_name(data, config),
        "layers": _positive_int(data, family.layers, where),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": _kv_heads(data, family, heads, where),
        "head_dim": _optional_positive_int(data, "head_dim", where, default=hidden // heads),
        "ffn_hidden": _ffn_hidden(data, family, hidden, where),
        "gated_ffn": family.gated_ffn,
        "vocab": _positive_int(data, "vocab_size", where),
        "tied_embeddings": _tied(data, family.tied_default, where),
        "source": f"Hugging Face config.json ({where})",
    }
    bits = _weight_bits(data, where)
    if bits is not None:
        values["weight_bits"] = bits
    return ModelSpec(**values)


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


def _family(data: dict[str, Any], where: str) -> _Family:
    """The field map of the config's ``model_type``."""
    model_type = data.get("model_type")
    if model_type is None:
        raise InputError(
            f"{where}: missing key `model_type`; supported model types are "
            f"{', '.join(supported_model_types())}"
        )
    family = _FAMILIES.get(model_type)
    if family is None:
        raise InputError(
            f"{where}: unsupported `model_type` {model_type!r}; supported model types are "
            f"{', '.join(supported_model_types())} (or write the model out as a models/*.yaml mapping)"
        )
    return family


def _positive_int(data: dict[str, Any], key: str, where: str) -> int:
    """``data[key]``, which must be present and a positive integer."""
    if data.get(key) is None:
        raise InputError(f"{where}: missing key `{key}` (model_type {data.get('model_type')!r})")
    return _check_positive_int(data[key], key, where)


def _optional_positive_int(data: dict[str, Any], key: str | None, where: str, *, default: int) -> int:
    """``data[key]`` when present and not null, else `default`."""
    if key is None or data.get(key) is None:
        return default
    return _check_positive_int(data[key], key, where)


def _check_positive_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{where}: `{key}` must be a positive integer, got {value!r}")
    return value


def _kv_heads(data: dict[str, Any], family: _Family, heads: int, where: str) -> int:
    """Key/value heads, which must divide the query heads; the query heads when absent."""
    kv_heads = _optional_positive_int(data, family.kv_heads, where, default=heads)
    if heads % kv_heads:
        raise InputError(
            f"{where}: `{family.kv_heads}` ({kv_heads}) must divide `{family.heads}` ({heads}); "
            "each key/value head serves the same number of query heads"
        )
    return kv_heads


def _ffn_hidden(data: dict[str, Any], family: _Family, hidden: int, where: str) -> int:
    """FFN width; required unless the family has a default multiple of the hidden size."""
    if family.ffn_default_factor is None:
        return _positive_int(data, family.ffn_hidden, where)
    return _optional_positive_int(data, family.ffn_hidden, where, default=family.ffn_default_factor * hidden)


def _tied(data: dict[str, Any], default: bool, where: str) -> bool:
    """``tie_word_embeddings``, or the config class default when absent."""
    value = data.get("tie_word_embeddings", default)
    if not isinstance(value, bool):
        raise InputError(f"{where}: `tie_word_embeddings` must be true or false, got {value!r}")
    return value


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
