"""Model specifications: the architecture of a decoder-only transformer.

A `ModelSpec` holds only what the cost model needs (DESIGN.md, "The cost model"):
layers ``L``, hidden size ``D``, query heads ``H``, key/value heads ``K``, head
dimension ``d``, FFN width ``F``, gated or plain FFN, vocabulary ``V``, tied
embeddings, and default precisions in bits. Specs ship as YAML files in the
top-level ``models/`` folder and are loaded by name.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from placement.errors import InputError

__all__ = ["ModelSpec", "load_model", "model_names", "models_dir", "spec_from_mapping"]


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a decoder-only transformer.

    Attributes
    ----------
    name : str
        Identifier, for example ``"llama-3.1-8b"``.
    layers : int
        Number of decoder layers ``L``.
    hidden : int
        Hidden size ``D``.
    heads : int
        Query heads ``H``.
    kv_heads : int
        Key/value heads ``K``; must divide ``heads`` (``K = H`` is plain
        multi-head attention, ``K < H`` grouped-query attention).
    head_dim : int
        Head dimension ``d`` (usually ``D / H``).
    ffn_hidden : int
        FFN intermediate width ``F``.
    gated_ffn : bool
        True for a gated FFN (SwiGLU: 3 matrices), False for a plain one (2).
    vocab : int
        Vocabulary size ``V``.
    tied_embeddings : bool
        Whether ``lm_head`` shares its matrix with ``embed``.
    weight_bits, kv_bits, activation_bits : float
        Default precisions in bits per element (weights, KV cache, activations on
        the wire). Fractional values are allowed (BitNet's 1.58-bit weights).
    published_params : float or None
        The parameter count the model's authors publish, for tests and docs.
    source : str
        Where the figures come from.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn_hidden: int
    gated_ffn: bool
    vocab: int
    tied_embeddings: bool
    weight_bits: float = 16.0
    kv_bits: float = 16.0
    activation_bits: float = 16.0
    published_params: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for field in ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn_hidden", "vocab"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(
                    f"model {self.name!r}: `{field}` must be a positive integer, got {value!r}"
                )
        if self.heads % self.kv_heads:
            raise InputError(
                f"model {self.name!r}: `kv_heads` ({self.kv_heads}) must divide `heads` "
                f"({self.heads}); each key/value head serves heads/kv_heads query heads"
            )
        for field in ("weight_bits", "kv_bits", "activation_bits"):
            value = getattr(self, field)
            if not 0 < value <= 64:
                raise InputError(
                    f"model {self.name!r}: `{field}` must be in (0, 64] bits, got {value!r}"
                )

    @property
    def group_size(self) -> int:
        """Query heads per key/value head, ``r = H / K``."""
        return self.heads // self.kv_heads

    @property
    def ffn_matrices(self) -> int:
        """3 for a gated FFN, 2 for a plain one."""
        return 3 if self.gated_ffn else 2

    @property
    def group_params(self) -> int:
        """Parameters of one attention group: ``D·d·(r+2)`` (r query heads, one K, one V)."""
        return self.hidden * self.head_dim * (self.group_size + 2)

    @property
    def projection_params(self) -> int:
        """Parameters of the attention output projection: ``H·d·D``."""
        return self.heads * self.head_dim * self.hidden

    @property
    def ffn_params(self) -> int:
        """Parameters of one FFN: ``(3 or 2)·D·F``."""
        return self.ffn_matrices * self.hidden * self.ffn_hidden

    @property
    def embed_params(self) -> int:
        """Parameters of the token embedding (and of ``lm_head``): ``V·D``."""
        return self.vocab * self.hidden

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer (norms and biases ignored)."""
        return self.kv_heads * self.group_params + self.projection_params + self.ffn_params

    @property
    def params(self) -> int:
        """Total parameters: layers, embedding, and ``lm_head`` unless tied."""
        heads_of_vocab = 1 if self.tied_embeddings else 2
        return self.layers * self.layer_params + heads_of_vocab * self.embed_params

    def kv_bytes_per_token(self, batch: int = 1, kv_bits: float | None = None) -> float:
        """KV-cache bytes one token adds across all layers: ``2·B·L·K·d·c/8``.

        Parameters
        ----------
        batch : int
            Sequences decoded together, ``B``.
        kv_bits : float, optional
            Cache precision in bits; the spec's ``kv_bits`` when omitted.

        Returns
        -------
        float
            Bytes.

        Examples
        --------
        >>> load_model("llama-2-7b").kv_bytes_per_token()
        524288.0
        """
        bits = self.kv_bits if kv_bits is None else kv_bits
        return 2 * batch * self.layers * self.kv_heads * self.head_dim * bits / 8

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


_SPEC_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)}


def spec_from_mapping(data: dict[str, Any], *, where: str = "model") -> ModelSpec:
    """Build a `ModelSpec` from a mapping such as a parsed ``models/*.yaml`` file.

    ``head_dim`` defaults to ``hidden // heads``; ``kv_heads`` to ``heads``;
    unknown keys are an error naming them (a typo must not pass silently).

    Raises
    ------
    InputError
        On a missing or unknown field, naming it and `where` the mapping came from.
    """
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping of model fields, got {type(data).__name__}")
    extra = sorted(set(data) - _SPEC_FIELDS - {"family"})
    if extra:
        raise InputError(
            f"{where}: unknown model field(s) {', '.join(map(repr, extra))}; "
            f"known fields are {', '.join(sorted(_SPEC_FIELDS))}"
        )
    values = {k: v for k, v in data.items() if k in _SPEC_FIELDS}
    required = ("name", "layers", "hidden", "heads", "ffn_hidden", "gated_ffn", "vocab", "tied_embeddings")
    missing = [k for k in required if k not in values]
    if missing:
        raise InputError(f"{where}: missing model field(s) {', '.join(missing)}")
    values.setdefault("kv_heads", values["heads"])
    if "head_dim" not in values:
        if not isinstance(values["hidden"], int) or not isinstance(values["heads"], int) or values["heads"] <= 0:
            raise InputError(f"{where}: `hidden` and `heads` must be positive integers")
        values["head_dim"] = values["hidden"] // values["heads"]
    return ModelSpec(**values)


def models_dir() -> Path:
    """The folder of shipped model specs.

    In a source checkout (or an editable install) this is the top-level
    ``models/``; a wheel carries the same files as ``placement/_data/models``.
    """
    packaged = Path(__file__).resolve().parents[1] / "_data" / "models"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "models"


@functools.cache
def _shipped_specs() -> dict[str, Path]:
    return {p.stem: p for p in sorted(models_dir().glob("*.yaml"))}


def model_names() -> list[str]:
    """Names of the shipped model specs, sorted."""
    return list(_shipped_specs())


def load_model(name: str) -> ModelSpec:
    """Load a shipped model spec by name.

    Parameters
    ----------
    name : str
        A name listed by `model_names` (also by ``placement models``).

    Returns
    -------
    ModelSpec

    Raises
    ------
    InputError
        If the name is unknown; the message lists the known names.

    Examples
    --------
    >>> load_model("llama-3.1-8b").kv_heads
    8
    """
    path = _shipped_specs().get(name)
    if path is None:
        raise InputError(
            f"unknown model {name!r}; shipped models are: {', '.join(model_names())} "
            "(or give the model inline, or as `hf_config: path/to/config.json`)"
        )
    with path.open() as fh:
        data = yaml.safe_load(fh)
    return spec_from_mapping(data, where=str(path))
