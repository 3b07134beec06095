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

import numpy as np
import yaml

from placement.errors import InputError

__all__ = ["ModelSpec", "ATTENTION_KINDS", "LAYER_TYPES", "expand_layer_types", "compact_layer_types", "load_model", "model_names",
           "models_dir", "spec_from_mapping"]


ATTENTION_KINDS = ("gqa", "mla")
LAYER_TYPES = ("full", "sliding")


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a decoder-only transformer, possibly with layers of different types.

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
        multi-head attention, ``K < H`` grouped-query attention, ``K = 1``
        multi-query attention). MLA models have ``K = 1``: the compressed latent is
        one cache that every head reads, so the whole attention is one group.
    head_dim : int
        Head dimension ``d`` of queries and keys (usually ``D / H``; for MLA
        ``qk_nope_head_dim + qk_rope_head_dim``).
    ffn_hidden : int
        FFN intermediate width ``F`` of a dense layer.
    gated_ffn : bool
        True for a gated FFN (SwiGLU, GeGLU: 3 matrices), False for a plain one (2).
        Experts use the same form.
    vocab : int
        Vocabulary size ``V``.
    tied_embeddings : bool
        Whether ``lm_head`` shares its matrix with ``embed``.
    weight_bits, kv_bits, activation_bits : float
        Default precisions in bits per element (weights, KV cache, activations on
        the wire). Fractional values are allowed (BitNet's 1.58-bit weights, or a
        4-bit checkpoint whose per-group scales and zeros add a fraction of a bit).
    published_params : float or None
        The parameter count the model's authors publish, for tests and docs.
    source : str
        Where the figures come from.
    layer_types : tuple of str
        One entry per layer, ``"full"`` or ``"sliding"`` attention; empty means every
        layer is ``"full"``. Files may write it compactly (`expand_layer_types`).
    sliding_window : int or None
        Window ``W`` of the ``"sliding"`` layers, positions: such a layer caches and
        attends to at most the last ``W`` positions.
    attention : {"gqa", "mla"}
        ``"gqa"`` (MHA, GQA, MQA by `kv_heads`) or multi-head latent attention.
    q_lora_rank, kv_lora_rank, qk_rope_head_dim, v_head_dim : int
        MLA only (DeepSeek-V2/V3): the query's low rank (0: a full-rank query
        projection), the key/value latent's rank, the rope part of each query/key
        head, and the value head dimension.
    experts, experts_per_token, expert_ffn_hidden : int
        Mixture of experts: routed experts ``E`` per MoE layer, the top-``k`` each
        token uses, and each expert's width ``F_e``; 0 for a dense model.
    shared_ffn_hidden : int
        Total width of the shared experts every token uses in an MoE layer (0: none).
    shared_expert_gate : bool
        Qwen-MoE's ``D → 1`` gate on the shared expert output (``D`` parameters).
    dense_layers : int
        MoE models: the first layers that keep a dense FFN of width ``ffn_hidden``
        (DeepSeek's ``first_k_dense_replace``).
    parallel_attention : bool
        Attention and FFN read the same layer input (Phi-2, GPT-NeoX, Falcon). The
        evaluator still runs them one after the other: an upper bound (docs/cost-model.md).
    learned_positions : int
        Rows of a learned position-embedding table (GPT-2, OPT), held with ``embed``; 0: none.
    embed_bits : float or None
        Bits of ``embed`` and ``lm_head`` when they differ from `weight_bits` (a 4-bit
        checkpoint keeps them at 16); None: `weight_bits`.
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
    layer_types: tuple[str, ...] = ()
    sliding_window: int | None = None
    attention: str = "gqa"
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    experts: int = 0
    experts_per_token: int = 0
    expert_ffn_hidden: int = 0
    shared_ffn_hidden: int = 0
    shared_expert_gate: bool = False
    dense_layers: int = 0
    parallel_attention: bool = False
    learned_positions: int = 0
    embed_bits: float | None = None

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
        for field in ("weight_bits", "kv_bits", "activation_bits", "embed_bits"):
            value = getattr(self, field)
            if value is not None and not 0 < value <= 64:
                raise InputError(
                    f"model {self.name!r}: `{field}` must be in (0, 64] bits, got {value!r}"
                )
        self._check_layer_types()
        self._check_attention()
        self._check_experts()

    def _check_layer_types(self) -> None:
        object.__setattr__(self, "layer_types", tuple(self.layer_types))
        if self.layer_types and len(self.layer_types) != self.layers:
            raise InputError(f"model {self.name!r}: `layer_types` has {len(self.layer_types)} entries, "
                             f"`layers` is {self.layers}; give one type per layer")
        unknown = sorted(set(self.layer_types) - set(LAYER_TYPES))
        if unknown:
            raise InputError(f"model {self.name!r}: unknown layer type(s) {', '.join(map(repr, unknown))} in "
                             f"`layer_types`; known types are {', '.join(LAYER_TYPES)}")
        if "sliding" in self.layer_types and not _positive(self.sliding_window):
            raise InputError(f"model {self.name!r}: `layer_types` has sliding layers, so `sliding_window` "
                             f"must be a positive number of positions, got {self.sliding_window!r}")

    def _check_attention(self) -> None:
        if self.attention not in ATTENTION_KINDS:
            raise InputError(f"model {self.name!r}: `attention` must be one of {', '.join(ATTENTION_KINDS)}, "
                             f"got {self.attention!r}")
        if self.attention != "mla":
            return
        for field in ("kv_lora_rank", "qk_rope_head_dim", "v_head_dim"):
            if not _positive(getattr(self, field)):
                raise InputError(f"model {self.name!r}: an MLA model needs a positive `{field}`")
        if self.kv_heads != 1:
            raise InputError(f"model {self.name!r}: an MLA model has `kv_heads: 1` (one latent cache that every "
                             f"head reads), got {self.kv_heads}")
        if self.qk_rope_head_dim >= self.head_dim:
            raise InputError(f"model {self.name!r}: `head_dim` ({self.head_dim}) is qk_nope + qk_rope head dims "
                             f"and must exceed `qk_rope_head_dim` ({self.qk_rope_head_dim})")

    def _check_experts(self) -> None:
        if not self.experts:
            return
        if not (_positive(self.experts_per_token) and self.experts_per_token <= self.experts):
            raise InputError(f"model {self.name!r}: `experts_per_token` must be in 1..experts ({self.experts}), "
                             f"got {self.experts_per_token!r}")
        if not _positive(self.expert_ffn_hidden):
            raise InputError(f"model {self.name!r}: an MoE model needs a positive `expert_ffn_hidden`")
        if not 0 <= self.dense_layers < self.layers:
            raise InputError(f"model {self.name!r}: `dense_layers` must be in 0..{self.layers - 1}, "
                             f"got {self.dense_layers!r}")

    # ---------------------------------------------------------------- per-layer figures
    @property
    def group_size(self) -> int:
        """Query heads per key/value head, ``r = H / K``."""
        return self.heads // self.kv_heads

    @property
    def ffn_matrices(self) -> int:
        """3 for a gated FFN, 2 for a plain one."""
        return 3 if self.gated_ffn else 2

    @property
    def is_moe(self) -> bool:
        """True when some layers route tokens to experts."""
        return self.experts > 0

    @property
    def windows(self) -> np.ndarray:
        """Positions each layer caches and attends to at most, (L,): ``W`` or ``inf`` (full attention)."""
        sliding = np.array([t == "sliding" for t in self.layer_types], dtype=bool) if self.layer_types \
            else np.zeros(self.layers, dtype=bool)
        return np.where(sliding, float(self.sliding_window or 0), np.inf)

    @property
    def moe_layers(self) -> np.ndarray:
        """Which layers are mixtures of experts, (L,) bool."""
        return (np.arange(self.layers) >= self.dense_layers) & self.is_moe

    @property
    def cache_values_per_token(self) -> int:
        """Values one group caches per position: ``2d`` (a key and a value), or MLA's ``kv_lora_rank + qk_rope_head_dim``."""
        return self.kv_lora_rank + self.qk_rope_head_dim if self.attention == "mla" else 2 * self.head_dim

    @property
    def value_dim(self) -> int:
        """Dimension of one head's output: ``d``, or MLA's ``v_head_dim``."""
        return self.v_head_dim if self.attention == "mla" else self.head_dim

    @property
    def group_params(self) -> int:
        """Parameters of one attention group.

        GQA: ``D·d·(r+2)`` (r query heads, one K, one V). MLA (the whole attention):
        the query (``D·H·d``, or ``D·q_rank + q_rank·H·d`` when low-rank), the joint
        down-projection ``D·(kv_rank + rope)`` and the up-projection
        ``kv_rank·H·(d − rope + v_head_dim)``.
        """
        D, H, d = self.hidden, self.heads, self.head_dim
        if self.attention != "mla":
            return D * d * (self.group_size + 2)
        query = D * H * d if not self.q_lora_rank else D * self.q_lora_rank + self.q_lora_rank * H * d
        down = D * (self.kv_lora_rank + self.qk_rope_head_dim)
        up = self.kv_lora_rank * H * (d - self.qk_rope_head_dim + self.v_head_dim)
        return query + down + up

    @property
    def projection_params(self) -> int:
        """Parameters of the attention output projection: ``H·d_v·D``."""
        return self.heads * self.value_dim * self.hidden

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert: ``(3 or 2)·D·F_e``."""
        return self.ffn_matrices * self.hidden * self.expert_ffn_hidden

    @property
    def moe_fixed_params(self) -> int:
        """What every token uses in an MoE layer besides its routed experts: the router
        ``D·E``, the shared experts ``(3 or 2)·D·F_s`` and Qwen-MoE's shared gate ``D``."""
        return (self.hidden * self.experts + self.ffn_matrices * self.hidden * self.shared_ffn_hidden
                + self.hidden * self.shared_expert_gate)

    @property
    def ffn_params_per_layer(self) -> np.ndarray:
        """Resident parameters of each layer's FFN (every expert of an MoE layer), (L,)."""
        moe = self.moe_fixed_params + self.experts * self.expert_params
        return np.where(self.moe_layers, moe, self.ffn_params).astype(np.int64)

    @property
    def ffn_active_params_per_layer(self) -> np.ndarray:
        """Parameters of each layer's FFN one token uses (its top-k experts of an MoE layer), (L,)."""
        moe = self.moe_fixed_params + self.experts_per_token * self.expert_params
        return np.where(self.moe_layers, moe, self.ffn_params).astype(np.int64)

    @property
    def ffn_params(self) -> int:
        """Parameters of one dense FFN: ``(3 or 2)·D·F`` (per layer, experts included: `ffn_params_per_layer`)."""
        return self.ffn_matrices * self.hidden * self.ffn_hidden

    @property
    def embed_params(self) -> int:
        """Parameters of the token embedding: ``V·D``, plus learned positions ``positions·D``."""
        return (self.vocab + self.learned_positions) * self.hidden

    @property
    def lm_head_params(self) -> int:
        """Parameters of ``lm_head``: ``V·D``."""
        return self.vocab * self.hidden

    @property
    def layer_params_per_layer(self) -> np.ndarray:
        """Parameters of each decoder layer (norms and biases ignored), (L,)."""
        return self.kv_heads * self.group_params + self.projection_params + self.ffn_params_per_layer

    @property
    def layer_params(self) -> int:
        """Parameters of the largest decoder layer (norms and biases ignored)."""
        return int(self.layer_params_per_layer.max())

    @property
    def params(self) -> int:
        """Total parameters: layers, embedding, and ``lm_head`` unless tied."""
        return int(self.layer_params_per_layer.sum()) + self._vocab_params

    @property
    def active_params(self) -> int:
        """Parameters one token uses (top-k experts of MoE layers; all of a dense model)."""
        per_layer = self.kv_heads * self.group_params + self.projection_params + self.ffn_active_params_per_layer
        return int(per_layer.sum()) + self._vocab_params

    @property
    def _vocab_params(self) -> int:
        return self.embed_params + (0 if self.tied_embeddings else self.lm_head_params)

    def kv_bytes_per_token(self, batch: int = 1, kv_bits: float | None = None) -> float:
        """KV-cache bytes one token adds across all layers while the context is within every window.

        ``B·L·K·v·c/8`` with ``v = 2d`` values per group (a key and a value) or, for
        MLA, ``kv_lora_rank + qk_rope_head_dim``. Past a sliding window the layer's
        cache stops growing (`kv_bytes`).

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
        return batch * self.layers * self.kv_heads * self.cache_values_per_token * bits / 8

    def kv_bytes(self, context: int, batch: int = 1, kv_bits: float | None = None) -> float:
        """The whole KV cache at a context of ``S`` positions, bytes: each layer holds ``min(S, W_l)`` positions.

        Parameters
        ----------
        context : int
            ``S``, positions.
        batch : int
        kv_bits : float, optional

        Returns
        -------
        float
            Bytes.
        """
        bits = self.kv_bits if kv_bits is None else kv_bits
        cached = np.minimum(float(context), self.windows).sum()
        return float(batch * cached * self.kv_heads * self.cache_values_per_token * bits / 8)

    @property
    def uniform_layers(self) -> bool:
        """True when every layer has the same type (window and FFN kind), so one layer stands for all."""
        windows, moe = self.windows, self.moe_layers
        return bool(np.all(windows == windows[0]) and np.all(moe == moe[0]))

    def with_layers(self, n: int) -> "ModelSpec":
        """The model with ``n`` layers: its first ``n`` (types kept), or, for a model of uniform
        layers, its layer repeated ``n`` times (tables with one "layer" per option).

        Parameters
        ----------
        n : int

        Returns
        -------
        ModelSpec

        Raises
        ------
        InputError
            When ``n`` exceeds the layers of a model whose layers differ.
        """
        if n <= self.layers:
            return self.replace(layers=n, layer_types=self.layer_types[:n], dense_layers=min(self.dense_layers, n - 1))
        if not self.uniform_layers:
            raise InputError(f"model {self.name!r}: its layers differ in type, so {n} copies of one layer do not stand for it")
        kind = self.layer_types[:1] * n
        return self.replace(layers=n, layer_types=kind, dense_layers=min(self.dense_layers, n - 1))

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def expand_layer_types(value: Any, *, where: str = "layer_types") -> tuple[str, ...]:
    """The per-layer list of a compact ``layer_types`` entry.

    Each item is a type name, or ``{repeat: n, layers: [...]}`` whose items are
    expanded again, so Gemma 2's 42 alternating layers are
    ``[{repeat: 21, layers: [sliding, full]}]``.

    Parameters
    ----------
    value : list
    where : str
        For messages.

    Returns
    -------
    tuple of str

    Raises
    ------
    InputError
        On an item that is neither a name nor a repeat mapping.

    Examples
    --------
    >>> expand_layer_types([{"repeat": 2, "layers": ["sliding", "full"]}, "full"])
    ('sliding', 'full', 'sliding', 'full', 'full')
    """
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{where}: expected a list of layer types such as [sliding, full], got {value!r}")
    out: list[str] = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and set(item) == {"repeat", "layers"} and _positive(item["repeat"]):
            out.extend(expand_layer_types(item["layers"], where=where) * item["repeat"])
        else:
            raise InputError(f"{where}: each item is a layer type or {{repeat: n, layers: [...]}}, got {item!r}")
    return tuple(out)


def compact_layer_types(types: tuple[str, ...] | list[str]) -> list[Any]:
    """The compact file form of a per-layer list (the inverse of `expand_layer_types`).

    From each position the longest run of a repeated block (the shortest block first)
    becomes ``{repeat: n, layers: [...]}``, its block compacted again.

    Parameters
    ----------
    types : sequence of str

    Returns
    -------
    list

    Examples
    --------
    >>> compact_layer_types(["sliding", "full"] * 3)
    [{'repeat': 3, 'layers': ['sliding', 'full']}]
    """
    types, out, i = list(types), [], 0
    while i < len(types):
        best = (1, 1)  # (block length, repeats)
        for p in range(1, (len(types) - i) // 2 + 1):
            k = 1
            while types[i + k * p:i + (k + 1) * p] == types[i:i + p]:
                k += 1
            if k >= 2 and p * k > best[0] * best[1]:
                best = (p, k)
        p, k = best
        if k == 1:
            out.append(types[i])
        else:
            out.append({"repeat": k, "layers": compact_layer_types(types[i:i + p])})
        i += p * k
    return out


_SPEC_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)}


def spec_from_mapping(data: dict[str, Any], *, where: str = "model") -> ModelSpec:
    """Build a `ModelSpec` from a mapping such as a parsed ``models/*.yaml`` file.

    ``head_dim`` defaults to ``hidden // heads``; ``kv_heads`` to ``heads``;
    ``layer_types`` may be compact (`expand_layer_types`); unknown keys are an
    error naming them (a typo must not pass silently).

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
    if "layer_types" in values:
        values["layer_types"] = expand_layer_types(values["layer_types"], where=f"{where}: `layer_types`")
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
