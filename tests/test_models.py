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

# Per-layer and family fields a shipped spec must carry as the importer reads them.
LAYER_FIELDS = ("layer_types", "sliding_window", "attention", "q_lora_rank", "kv_lora_rank", "qk_rope_head_dim",
                "v_head_dim", "experts", "experts_per_token", "expert_ffn_hidden", "shared_ffn_hidden",
                "shared_expert_gate", "dense_layers", "parallel_attention", "learned_positions")

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
    # Qwen3 report (arXiv:2505.09388) Table 1 / Qwen/Qwen3-8B model card: 8.2B.
    pytest.param("qwen3-8b", 8.2e9, id="qwen3-8b"),
    # Gemma 2 report (arXiv:2408.00118) Table 1: 917,504,000 embedding + 8,324,201,472 non-embedding.
    pytest.param("gemma-2-9b", 9.2417e9, id="gemma-2-9b"),
    # Gemma report (arXiv:2403.08295) Table 2: 786,825,216 + 7,751,248,896.
    pytest.param("gemma-7b", 8.538e9, id="gemma-7b"),
    # Microsoft's Phi-2 announcement "2.7 billion"; HF microsoft/phi-2: 2,779,683,840.
    pytest.param("phi-2", 2.78e9, id="phi-2"),
    # Pythia (arXiv:2304.01373) Table 1: 1,414,647,808.
    pytest.param("pythia-1.4b", 1.4146e9, id="pythia-1.4b"),
    # Falcon series (arXiv:2311.16867) "7B"; HF tiiuae/falcon-7b: 6,921,720,704.
    pytest.param("falcon-7b", 6.92e9, id="falcon-7b"),
    # OPT (arXiv:2205.01068) Table 1: 125M.
    pytest.param("opt-125m", 125e6, id="opt-125m"),
    # Mixtral of Experts (arXiv:2401.04088) "47B"; HF mistralai/Mixtral-8x7B-v0.1: 46,702,792,704.
    pytest.param("mixtral-8x7b", 46.7e9, id="mixtral-8x7b"),
    # Qwen/Qwen1.5-MoE-A2.7B model card: 14.3B total.
    pytest.param("qwen1.5-moe-a2.7b", 14.3e9, id="qwen1.5-moe-a2.7b"),
    # Qwen3 report Table 2 / Qwen/Qwen3-30B-A3B model card: 30.5B total.
    pytest.param("qwen3-30b-a3b", 30.5e9, id="qwen3-30b-a3b"),
    # DeepSeek-V2 (arXiv:2405.04434) Appendix B: DeepSeek-V2-Lite 15.7B total.
    pytest.param("deepseek-v2-lite", 15.7e9, id="deepseek-v2-lite"),
    # DeepSeek-V3 report (arXiv:2412.19437): 671B total (without the MTP module).
    pytest.param("deepseek-v3", 671e9, id="deepseek-v3"),
]

# Counts of transformers itself: each config in tests/data/hf built with transformers 5.24.0 on the
# meta device (`with torch.device("meta"): AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))`,
# Gemma3ForCausalLM(Gemma3TextConfig(**text_config)) for Gemma 3), summing `numel()` of
# every parameter, and of every parameter that is not a norm or a bias (what the cost
# model counts). stem -> (all parameters, without norms and biases).
TRANSFORMERS_COUNTS = {
    "bitnet-b1.58-2b-4t-hf": (2_412_820_480, 2_412_380_160),  # BitNetForCausalLM
    "deepseek-v2-lite": (15_706_484_224, 15_706_357_760),  # DeepseekV2ForCausalLM
    "deepseek-v3": (671_026_404_352, 671_025_397_760),  # DeepseekV3ForCausalLM (no MTP layer)
    "falcon-7b": (6_921_720_704, 6_921_420_800),  # FalconForCausalLM
    "gemma-2-9b": (9_241_705_984, 9_241_100_288),  # Gemma2ForCausalLM
    "gemma-3-4b": (3_880_263_168, 3_879_895_040),  # Gemma3ForCausalLM (the language model)
    "gemma-7b": (8_537_680_896, 8_537_505_792),  # GemmaForCausalLM
    "gpt2": (124_439_808, 124_318_464),  # GPT2LMHeadModel (position table counted)
    "llama-2-7b": (6_738_415_616, 6_738_149_376),  # LlamaForCausalLM
    "llama-3.1-8b": (8_030_261_248, 8_029_995_008),
    "llama-3.2-1b": (1_235_814_400, 1_235_746_816),
    "mistral-7b": (7_241_732_096, 7_241_465_856),  # MistralForCausalLM
    "mixtral-8x7b": (46_702_792_704, 46_702_526_464),  # MixtralForCausalLM
    "opt-125m": (125_239_296, 125_117_952),  # OPTForCausalLM (2050-row position table counted)
    "phi-2": (2_779_683_840, 2_778_726_400),  # PhiForCausalLM
    "phi-3-mini": (3_821_079_552, 3_820_879_872),  # Phi3ForCausalLM
    "pythia-1.4b": (1_414_647_808, 1_414_004_736),  # GPTNeoXForCausalLM
    "qwen1.5-moe-a2.7b": (14_315_784_192, 14_315_536_384),  # Qwen2MoeForCausalLM
    "qwen2.5-0.5b": (494_032_768, 493_961_216),  # Qwen2ForCausalLM
    "qwen3-0.6b": (596_049_920, 595_984_384),  # Qwen3ForCausalLM
    "qwen3-30b-a3b": (30_532_122_624, 30_531_911_680),  # Qwen3MoeForCausalLM
    "qwen3-8b": (8_190_735_360, 8_190_427_136),  # Qwen3ForCausalLM
}


@pytest.mark.parametrize("stem", sorted(TRANSFORMERS_COUNTS))
def test_hf_import_counts_match_transformers(stem: str) -> None:
    everything, without_norms_and_biases = TRANSFORMERS_COUNTS[stem]
    spec = spec_from_hf_config(HF_DIR / f"{stem}.json")
    assert spec.params == without_norms_and_biases
    assert abs(spec.params - everything) / everything < 1e-3


def test_every_hf_config_has_a_transformers_count() -> None:
    assert set(HF_CONFIGS) == set(TRANSFORMERS_COUNTS)


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
        # 12 * (12*768*64*3 + 12*64*768 + 2*768*3072) + 1*(50257 + 1024 positions)*768
        # = 12 * (1,769,472 + 589,824 + 4,718,592) + 39,383,808
        ("gpt2", 124_318_464),
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
        # 2 * 36 * 8 * 128 * 2 (Qwen3-8B config.json: 36 layers, 8 KV heads, head_dim 128)
        ("qwen3-8b", 147_456),
        # 2 * 42 * 8 * 256 * 2, while the context is within the 4096-token window
        ("gemma-2-9b", 344_064),
        # 2 * 32 * 32 * 80 * 2
        ("phi-2", 327_680),
        # MQA: 2 * 32 * 1 * 64 * 2
        ("falcon-7b", 8_192),
        # 2 * 32 * 8 * 128 * 2
        ("mixtral-8x7b", 131_072),
        # 2 * 48 * 4 * 128 * 2
        ("qwen3-30b-a3b", 98_304),
        # MLA: 27 layers * (kv_lora_rank 512 + qk_rope_head_dim 64) * 2 bytes; DeepSeek-V2
        # (arXiv:2405.04434) Table 1: (d_c + d_h^R) * l elements per token
        ("deepseek-v2-lite", 31_104),
        # 61 * (512 + 64) * 2
        ("deepseek-v3", 70_272),
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
    base = {"name", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn_hidden", "gated_ffn", "vocab",
            "tied_embeddings", "weight_bits", "kv_bits", "activation_bits", "published_params", "source"}
    assert base <= set(data) - {"family"} <= spec_fields
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


@pytest.mark.parametrize("stem", [s for s in HF_CONFIGS if s in model_names()])
def test_hf_import_matches_shipped_spec(stem: str) -> None:
    imported = spec_from_hf_config(HF_DIR / f"{stem}.json", name=stem)
    shipped = load_model(stem)
    for field in ARCHITECTURE_FIELDS + LAYER_FIELDS:
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
    assert supported_model_types() == [
        "RefinedWeb", "RefinedWebModel", "bitnet", "deepseek_v2", "deepseek_v3", "falcon", "gemma", "gemma2",
        "gemma3_text", "gpt2", "gpt_neox", "llama", "mistral", "mixtral", "opt", "phi", "phi3", "qwen2",
        "qwen2_moe", "qwen3", "qwen3_moe"]


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
    with pytest.raises(InputError, match=r"unsupported `model_type` 'mamba'; supported model types are RefinedWeb"):
        spec_from_hf_config({"model_type": "mamba"})


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


# --- Families, windows, quantization ------------------------------------------------


def _hf(stem: str) -> dict:
    return json.loads((HF_DIR / f"{stem}.json").read_text())


def test_hf_bitnet_config_matches_shipped_spec() -> None:
    # microsoft/bitnet-b1.58-2B-4T config.json: quant_method bitnet -> ternary weights, 8-bit activations
    imported, shipped = spec_from_hf_config(HF_DIR / "bitnet-b1.58-2b-4t-hf.json"), load_model("bitnet-b1.58-2b-4t")
    assert all(getattr(imported, f) == getattr(shipped, f) for f in ARCHITECTURE_FIELDS)
    assert (imported.weight_bits, imported.activation_bits, imported.embed_bits) == (1.58, 8, 16)


def test_hf_gemma2_alternates_local_and_global_layers() -> None:
    spec = spec_from_hf_config(HF_DIR / "gemma-2-9b.json")
    # transformers Gemma2: layer i slides when i is even; head_dim 256 though 3584/16 = 224
    assert spec.layer_types[:4] == ("sliding", "full", "sliding", "full") and spec.sliding_window == 4096
    assert spec.head_dim == 256 and spec.tied_embeddings
    # at 8192 positions: 21 global layers hold 8192, 21 local ones 4096: 2*8*256*2 bytes per position each
    assert spec.kv_bytes(8192) == (21 * 8192 + 21 * 4096) * 2 * 8 * 256 * 2


def test_hf_gemma3_window_pattern_from_text_config() -> None:
    spec = spec_from_hf_config(HF_DIR / "gemma-3-4b.json")
    # sliding_window_pattern 6: layers 5, 11, 17, 23, 29 are global, the other 29 of 34 local (window 1024)
    assert [i for i, t in enumerate(spec.layer_types) if t == "full"] == [5, 11, 17, 23, 29]
    assert spec.sliding_window == 1024 and spec.vocab == 262208


def test_hf_window_of_mistral_and_phi3_caps_every_layer() -> None:
    phi3 = spec_from_hf_config(HF_DIR / "phi-3-mini.json")
    # Phi-3-mini-4k: sliding_window 2047 on all 32 layers; at 4096 tokens the cache holds 2047 positions,
    # 2*32*32*96*2 = 393,216 bytes per position
    assert phi3.kv_bytes(4096) == 2047 * 393_216
    assert spec_from_hf_config(HF_DIR / "mistral-7b.json").windows.tolist() == [4096.0] * 32


def test_hf_qwen2_use_sliding_window() -> None:
    data = _hf("qwen2.5-0.5b")
    assert spec_from_hf_config(data).layer_types == ()  # use_sliding_window false in the release
    spec = spec_from_hf_config(data | {"use_sliding_window": True, "sliding_window": 1024, "max_window_layers": 20})
    # transformers Qwen2: layers from max_window_layers on use the window
    assert spec.layer_types == ("full",) * 20 + ("sliding",) * 4


def test_hf_explicit_layer_types_win() -> None:
    data = _hf("qwen3-8b") | {"sliding_window": 512, "layer_types": ["sliding_attention", "full_attention"] * 18}
    assert spec_from_hf_config(data).layer_types == ("sliding", "full") * 18
    with pytest.raises(InputError, match=r"`layer_types` \['linear_attention'\] .* is not supported"):
        spec_from_hf_config(data | {"layer_types": ["linear_attention"] * 36})


def test_hf_moe_fields() -> None:
    ds = spec_from_hf_config(HF_DIR / "deepseek-v2-lite.json")
    assert (ds.attention, ds.kv_heads, ds.head_dim, ds.dense_layers) == ("mla", 1, 192, 1)
    assert (ds.experts, ds.experts_per_token, ds.shared_ffn_hidden) == (64, 6, 2 * 1408)
    qwen = spec_from_hf_config(HF_DIR / "qwen1.5-moe-a2.7b.json")
    assert (qwen.experts, qwen.experts_per_token, qwen.shared_ffn_hidden, qwen.shared_expert_gate) == (60, 4, 5632, True)
    # Mixtral's active parameters: 32 * (attention 41,943,040 + 2 experts * 176,160,768 + router 32,768)
    # = 32 * 394,297,344, plus 2 * 131,072,000 = 12,879,659,008; the paper says "13B active parameters"
    assert spec_from_hf_config(HF_DIR / "mixtral-8x7b.json").active_params == 12_879_659_008


def test_hf_parallel_attention_families() -> None:
    for stem in ("phi-2", "pythia-1.4b", "falcon-7b"):
        assert spec_from_hf_config(HF_DIR / f"{stem}.json").parallel_attention, stem
    falcon = spec_from_hf_config(HF_DIR / "falcon-7b.json")
    assert (falcon.kv_heads, falcon.ffn_hidden, falcon.gated_ffn, falcon.tied_embeddings) == (1, 4 * 4544, False, True)


@pytest.mark.parametrize(
    ("quantization", "bits"),
    [
        # AWQ GEMM: 4-bit weights, per 128 weights a 16-bit scale and a 4-bit zero: 4 + 20/128
        ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}, 4.15625),
        # GPTQ: 16-bit scale and packed 4-bit zero per group of 128
        ({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}, 4.15625),
        # GPTQ 8-bit, groups of 64: 8 + 24/64
        ({"quant_method": "gptq", "bits": 8, "group_size": 64}, 8.375),
        # bitsandbytes NF4: a float32 absmax per block of 64: 4 + 32/64
        ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, 4.5),
        # double quantization: 8-bit absmax per 64, one float32 per 256 blocks: 4 + 8/64 + 32/16384
        ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_use_double_quant": True}, 4.126953125),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, 8.0),
        # DeepSeek-V3's FP8 with a float32 scale per 128x128 block
        ({"quant_method": "fp8", "weight_block_size": [128, 128]}, 8 + 32 / 16384),
    ],
)
def test_hf_quantization_bits(quantization: dict, bits: float) -> None:
    spec = spec_from_hf_config(_hf("llama-3.1-8b") | {"quantization_config": quantization})
    assert spec.weight_bits == pytest.approx(bits, rel=1e-12)
    assert spec.embed_bits == 16  # embed and lm_head stay in the bfloat16 of torch_dtype


def test_hf_awq_checkpoint_bytes() -> None:
    # Llama-3.1-8B AWQ: 6,979,321,856 layer weights at 4.15625 bits + 2 * 525,336,576 at 16 bits
    spec = spec_from_hf_config(_hf("llama-3.1-8b") | {"quantization_config": {
        "quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}})
    layer_params = spec.params - 2 * spec.embed_params
    assert layer_params == 6_979_321_856
    from placement.cost.precision import Precision
    p = Precision.uniform(spec.layers, spec.weight_bits, 16, 16, spec.embed_bits)
    assert (p.attention[0], p.embed, p.lm_head) == (4.15625, 16.0, 16.0)


def test_hf_unsupported_quantization() -> None:
    with pytest.raises(InputError, match=r"`quant_method` 'hqq' is not supported; supported are awq, gptq"):
        spec_from_hf_config(_hf("llama-3.1-8b") | {"quantization_config": {"quant_method": "hqq"}})


def test_hf_unsupported_features_one_line() -> None:
    with pytest.raises(InputError, match=r"`word_embed_proj_dim` \(512\) .* is not supported by the cost model"):
        spec_from_hf_config(_hf("opt-125m") | {"word_embed_proj_dim": 512})
    with pytest.raises(InputError, match=r"`mlp_only_layers` .* is not supported"):
        spec_from_hf_config(_hf("qwen3-30b-a3b") | {"mlp_only_layers": [3]})
    with pytest.raises(InputError, match=r"`moe_layer_freq` other than 1"):
        spec_from_hf_config(_hf("deepseek-v2-lite") | {"moe_layer_freq": 2})
