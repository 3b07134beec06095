"""The shipped model specs against published figures, and the Hugging Face importer.

Parameter counts are pinned to the authors' published numbers, each cited where it
is listed; KV-cache bytes per token are checked exactly, with the arithmetic.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from placement.cost.hf import spec_from_hf_config, supported_model_types
from placement.cost.model import ModelSpec, load_model, model_names, models_dir, spec_from_mapping
from placement.errors import InputError

HF_DIR = Path(__file__).parent / "data" / "hf"

ARCHITECTURE_FIELDS = (
    "layers",
    "hidden",
    "heads",
    "kv_heads",
    "head_dim",
    "ffn_hidden",
    "gated_ffn",
    "vocab",
    "tied_embeddings",
)

SYNTHETIC = ("synthetic-h8-d512", "synthetic-h16-d1024", "synthetic-h32-d2048", "synthetic-h64-d4096")

# The cost model ignores norms, biases and position embeddings, so it may differ
# from a published count; 1% is the allowance.
PARAMS_TOLERANCE = 0.01

# name -> published parameter count. Where the authors give only a nominal size
# ("7B", "70B"), the figure is the Hugging Face Hub count of their released weights.
PUBLISHED_PARAMS = [
    # OpenAI's corrected GPT-2 small count, 124M (Radford et al. 2019 Table 2 said 117M);
    # includes position embeddings and biases that the cost model leaves out.
    pytest.param("gpt2", 124e6, id="gpt2"),
    # Llama 2 (arXiv:2307.09288) Table 1 "7B"; HF meta-llama/Llama-2-7b-hf: 6,738,415,616.
    pytest.param("llama-2-7b", 6.74e9, id="llama-2-7b"),
    # Llama 2 Table 1 "13B"; HF meta-llama/Llama-2-13b-hf: 13,015,864,320.
    pytest.param("llama-2-13b", 13.0e9, id="llama-2-13b"),
    # Llama 2 Table 1 "70B" (1.5% above the real count); HF meta-llama/Llama-2-70b-hf: 68,976,648,192.
    pytest.param("llama-2-70b", 69.0e9, id="llama-2-70b"),
    # Meta Llama 3.2 model card: "1B (1.23B)".
    pytest.param("llama-3.2-1b", 1.23e9, id="llama-3.2-1b"),
    # Meta Llama 3.2 model card: "3B (3.21B)".
    pytest.param("llama-3.2-3b", 3.21e9, id="llama-3.2-3b"),
    # Llama 3 Herd (arXiv:2407.21783) Table 3 "8B"; HF meta-llama/Llama-3.1-8B: 8,030,261,248.
    pytest.param("llama-3.1-8b", 8.03e9, id="llama-3.1-8b"),
    # Meta Llama 3 model card "70B"; HF meta-llama/Meta-Llama-3-70B: 70,553,706,496.
    pytest.param("llama-3-70b", 70.6e9, id="llama-3-70b"),
    # Mistral AI's Mistral 7B announcement: "a 7.3B parameter model" (weights hold 7.24e9).
    pytest.param("mistral-7b", 7.3e9, id="mistral-7b"),
    # Qwen2.5-0.5B model card / Qwen2.5 report (arXiv:2412.15115) Table 1: 0.49B.
    pytest.param("qwen2.5-0.5b", 0.49e9, id="qwen2.5-0.5b"),
    # Qwen2.5-7B model card / Qwen2.5 report Table 1: 7.61B.
    pytest.param("qwen2.5-7b", 7.61e9, id="qwen2.5-7b"),
    # Phi-3 Technical Report (arXiv:2404.14219): phi-3-mini, 3.8 billion parameters.
    pytest.param("phi-3-mini", 3.8e9, id="phi-3-mini"),
    # BitNet b1.58 2B4T report (arXiv:2504.12285) names it "2B"; like the Llama rows above,
    # the count is the Hugging Face Hub's for the released weights
    # (microsoft/bitnet-b1.58-2B-4T-bf16: 2.41B). The ternary format does not change the count.
    pytest.param("bitnet-b1.58-2b-4t", 2.41e9, id="bitnet-b1.58-2b-4t"),
]


def _published_names() -> set[str]:
    return {param.values[0] for param in PUBLISHED_PARAMS}


@pytest.mark.parametrize(("name", "published"), PUBLISHED_PARAMS)
def test_params_within_one_percent_of_published(name: str, published: float) -> None:
    spec = load_model(name)
    assert spec.published_params == pytest.approx(published, rel=1e-12)
    assert spec.params == pytest.approx(published, rel=PARAMS_TOLERANCE)


def test_every_real_model_has_a_published_count() -> None:
    real = set(model_names()) - set(SYNTHETIC)
    assert real == _published_names()
    for name in SYNTHETIC:
        assert load_model(name).published_params is None


# Cost-model counts worked by hand: L * (K*D*d*(r+2) + H*d*D + m*D*F) + (1 or 2)*V*D.
@pytest.mark.parametrize(
    ("name", "params"),
    [
        # 32 * (32*4096*128*3 + 32*128*4096 + 3*4096*11008) + 2*32000*4096
        # = 32 * (50,331,648 + 16,777,216 + 135,266,304) + 262,144,000
        ("llama-2-7b", 6_738_149_376),
        # 32 * (8*4096*128*6 + 32*128*4096 + 3*4096*14336) + 2*128256*4096
        # = 32 * (25,165,824 + 16,777,216 + 176,160,768) + 1,050,673,152
        ("llama-3.1-8b", 8_029_995_008),
        # 12 * (12*768*64*3 + 12*64*768 + 2*768*3072) + 1*50257*768
        # = 12 * (1,769,472 + 589,824 + 4,718,592) + 38,597,376
        ("gpt2", 123_532_032),
        # 24 * (2*896*64*9 + 14*64*896 + 3*896*4864) + 1*151936*896
        # = 24 * (1,032,192 + 802,816 + 13,074,432) + 136,134,656
        ("qwen2.5-0.5b", 493_961_216),
        # 1 * (8*512*64*3 + 8*64*512 + 2*512*2048) + 2*32000*512
        # = (786,432 + 262,144 + 2,097,152) + 32,768,000
        ("synthetic-h8-d512", 35_913_728),
    ],
)
def test_params_by_hand(name: str, params: int) -> None:
    assert load_model(name).params == params


@pytest.mark.parametrize(
    ("name", "kv_bytes"),
    [
        # 2 (K and V) * 32 layers * 32 KV heads * 128 head dim * 2 bytes
        ("llama-2-7b", 524_288),
        # 2 * 40 * 40 * 128 * 2
        ("llama-2-13b", 819_200),
        # GQA: 2 * 80 layers * 8 KV heads * 128 * 2
        ("llama-2-70b", 327_680),
        ("llama-3-70b", 327_680),
        # 2 * 32 * 8 * 128 * 2
        ("llama-3.1-8b", 131_072),
        ("mistral-7b", 131_072),
        # 2 * 16 * 8 * 64 * 2
        ("llama-3.2-1b", 32_768),
        # 2 * 28 * 8 * 128 * 2
        ("llama-3.2-3b", 114_688),
        # 2 * 24 * 2 * 64 * 2
        ("qwen2.5-0.5b", 12_288),
        # 2 * 28 * 4 * 128 * 2
        ("qwen2.5-7b", 57_344),
        # 2 * 32 * 32 * 96 * 2
        ("phi-3-mini", 393_216),
        # 2 * 12 * 12 * 64 * 2
        ("gpt2", 36_864),
        # 2 * 30 * 5 * 128 * 2 (16-bit cache)
        ("bitnet-b1.58-2b-4t", 76_800),
        # 2 * 1 layer * 64 heads * 64 * 4 bytes (the paper's 32-bit values)
        ("synthetic-h64-d4096", 32_768),
    ],
)
def test_kv_bytes_per_token(name: str, kv_bytes: int) -> None:
    assert load_model(name).kv_bytes_per_token() == kv_bytes


def test_kv_bytes_scale_with_batch_and_bits() -> None:
    spec = load_model("llama-3.1-8b")
    # 2 * 4 sequences * 32 * 8 * 128 * 1 byte (8-bit cache)
    assert spec.kv_bytes_per_token(batch=4, kv_bits=8) == 262_144


@pytest.mark.parametrize("name", model_names())
def test_yaml_fields_match_spec(name: str) -> None:
    path = models_dir() / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    spec_fields = {f.name for f in dataclasses.fields(ModelSpec)}
    assert set(data) - {"family"} == spec_fields
    assert data["name"] == path.stem
    assert data["source"].strip()


def test_shipped_models_listed() -> None:
    assert _published_names() | set(SYNTHETIC) == set(model_names())


def test_bitnet_precisions() -> None:
    spec = load_model("bitnet-b1.58-2b-4t")
    assert (spec.weight_bits, spec.activation_bits, spec.kv_bits) == (1.58, 8, 16)


# --- Hugging Face import -----------------------------------------------------------

HF_CONFIGS = sorted(path.stem for path in HF_DIR.glob("*.json"))


def test_hf_test_configs_present() -> None:
    assert {"llama-3.1-8b", "mistral-7b", "qwen2.5-0.5b", "phi-3-mini", "gpt2"} <= set(HF_CONFIGS)


@pytest.mark.parametrize("stem", HF_CONFIGS)
def test_hf_import_matches_shipped_spec(stem: str) -> None:
    imported = spec_from_hf_config(HF_DIR / f"{stem}.json", name=stem)
    shipped = load_model(stem)
    for field in ARCHITECTURE_FIELDS:
        assert getattr(imported, field) == getattr(shipped, field), field
    assert imported.params == shipped.params
    assert imported.name == stem


def test_hf_import_accepts_dict_str_and_folder(tmp_path: Path) -> None:
    data = json.loads((HF_DIR / "qwen2.5-0.5b.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(data))
    from_dict = spec_from_hf_config(data, name="q")
    from_str = spec_from_hf_config(str(tmp_path / "config.json"), name="q")
    from_folder = spec_from_hf_config(tmp_path, name="q")
    assert from_dict.params == from_str.params == from_folder.params == load_model("qwen2.5-0.5b").params


def test_hf_default_names() -> None:
    assert spec_from_hf_config(HF_DIR / "gpt2.json").name == "gpt2"  # the file's stem
    assert spec_from_hf_config(HF_DIR / "llama-2-7b.json").name == "Llama-2-7b-hf"  # _name_or_path


def test_hf_dtype_to_weight_bits() -> None:
    assert spec_from_hf_config(HF_DIR / "llama-3.1-8b.json").weight_bits == 16  # bfloat16
    assert spec_from_hf_config(HF_DIR / "llama-2-7b.json").weight_bits == 16  # float16
    data = json.loads((HF_DIR / "mistral-7b.json").read_text())
    assert spec_from_hf_config(data | {"torch_dtype": "float32"}).weight_bits == 32
    del data["torch_dtype"]
    assert spec_from_hf_config(data | {"dtype": "float32"}).weight_bits == 32  # newer key
    assert spec_from_hf_config(data).weight_bits == 16  # absent: the ModelSpec default


def test_hf_gpt2_defaults() -> None:
    data = json.loads((HF_DIR / "gpt2.json").read_text())
    assert "tie_word_embeddings" not in data and "n_inner" not in data
    spec = spec_from_hf_config(data)
    assert spec.tied_embeddings and not spec.gated_ffn
    assert spec.ffn_hidden == 4 * 768
    assert spec_from_hf_config(data | {"n_inner": 1024}).ffn_hidden == 1024


def test_hf_llama_defaults_kv_heads_to_heads() -> None:
    data = json.loads((HF_DIR / "llama-2-7b.json").read_text())
    del data["num_key_value_heads"], data["tie_word_embeddings"]
    spec = spec_from_hf_config(data)
    assert spec.kv_heads == spec.heads == 32
    assert not spec.tied_embeddings  # LlamaConfig's default


def test_supported_model_types() -> None:
    assert supported_model_types() == ["gpt2", "llama", "mistral", "phi3", "qwen2"]


# --- Bad input ------------------------------------------------------------------------

GOOD = {
    "name": "tiny",
    "layers": 2,
    "hidden": 64,
    "heads": 4,
    "kv_heads": 2,
    "ffn_hidden": 256,
    "gated_ffn": True,
    "vocab": 100,
    "tied_embeddings": False,
}


def test_good_mapping_builds() -> None:
    assert spec_from_mapping(GOOD).head_dim == 16


def test_kv_heads_must_divide_heads() -> None:
    with pytest.raises(InputError, match=r"`kv_heads` \(3\) must divide `heads` \(4\)"):
        spec_from_mapping(GOOD | {"kv_heads": 3})


def test_negative_layers() -> None:
    with pytest.raises(InputError, match=r"`layers` must be a positive integer, got -2"):
        spec_from_mapping(GOOD | {"layers": -2})


def test_unknown_field() -> None:
    with pytest.raises(InputError, match=r"unknown model field\(s\) 'n_layers'; known fields are"):
        spec_from_mapping(GOOD | {"n_layers": 2})


def test_missing_field() -> None:
    data = dict(GOOD)
    del data["vocab"]
    with pytest.raises(InputError, match=r"missing model field\(s\) vocab"):
        spec_from_mapping(data)


def test_unknown_model_name_lists_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown model 'llama-9-7b'; shipped models are: .*llama-3\.1-8b"):
        load_model("llama-9-7b")


def test_hf_missing_key_names_key_and_file(tmp_path: Path) -> None:
    data = json.loads((HF_DIR / "llama-3.1-8b.json").read_text())
    del data["num_hidden_layers"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"config\.json: missing key `num_hidden_layers`"):
        spec_from_hf_config(path)


def test_hf_unknown_model_type() -> None:
    with pytest.raises(InputError, match=r"unsupported `model_type` 'bitnet'; supported model types are gpt2, llama"):
        spec_from_hf_config({"model_type": "bitnet"})


def test_hf_missing_model_type() -> None:
    with pytest.raises(InputError, match=r"missing key `model_type`"):
        spec_from_hf_config({"hidden_size": 8})


def test_hf_bad_value() -> None:
    data = json.loads((HF_DIR / "mistral-7b.json").read_text())
    with pytest.raises(InputError, match=r"`hidden_size` must be a positive integer, got '4096'"):
        spec_from_hf_config(data | {"hidden_size": "4096"})


def test_hf_kv_heads_must_divide_heads() -> None:
    data = json.loads((HF_DIR / "mistral-7b.json").read_text())
    with pytest.raises(InputError, match=r"`num_key_value_heads` \(5\) must divide `num_attention_heads` \(32\)"):
        spec_from_hf_config(data | {"num_key_value_heads": 5})


def test_hf_unknown_dtype() -> None:
    data = json.loads((HF_DIR / "mistral-7b.json").read_text())
    with pytest.raises(InputError, match=r"unknown `torch_dtype` 'int4'; known dtypes are"):
        spec_from_hf_config(data | {"torch_dtype": "int4"})


def test_hf_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no file at .*nothing\.json"):
        spec_from_hf_config(tmp_path / "nothing.json")


def test_hf_not_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"config\.json: not valid JSON"):
        spec_from_hf_config(path)


def test_hf_wrong_type() -> None:
    with pytest.raises(InputError, match=r"expected a mapping or the path of a config\.json, got int"):
        spec_from_hf_config(42)  # type: ignore[arg-type]
