"""Hand-worked values of the cost formulas (DESIGN.md, "The cost model") for a tiny model.

Tiny model: L=2, D=8, H=4, K=2 (r = H/K = 2), d=2, F=16, gated FFN (3 matrices), V=10,
B=1, 16-bit weights, KV cache and activations (2 bytes per element) unless a test says
otherwise. Every expected number is written out with its arithmetic.

    group params       params_g = D*d*(r+2) = 8*2*(2+2) = 64
    projection params  H*d*D = 4*2*8 = 64
    FFN params         3*D*F = 3*8*16 = 384        (plain FFN: 2*8*16 = 256)
    embed / lm_head    V*D = 10*8 = 80
"""

from __future__ import annotations

import numpy as np
import pytest

from placement.cost.blocks import decode_costs, prefill_costs
from placement.cost.tables import block_memory
from placement.cost.kafetzis import FFN_FLOP_FACTOR, kafetzis_block_memory, kafetzis_step_costs
from placement.cost.model import spec_from_mapping
from placement.cost.precision import Precision
from placement.instance import instance_from_dict

TINY = {"name": "tiny", "layers": 2, "hidden": 8, "heads": 4, "kv_heads": 2, "ffn_hidden": 16,
        "gated_ffn": True, "vocab": 10, "tied_embeddings": False}


def tiny(**changes):
    return spec_from_mapping({**TINY, **changes})


def tiny_instance(model=None, batch=1, profile="roofline", P=3, T=2):
    return instance_from_dict({
        "model": {**TINY, **(model or {})},
        "devices": [{"name": "a", "memory": 1e9, "peak_flops": 1e9, "memory_bandwidth": 1e9}],
        "workload": {"prompt_tokens": P, "generate_tokens": T, "batch": batch, "profile": profile},
    }, check_capacity=False)


def bits16():
    return Precision.uniform(2, 16, 16, 16)


def test_parameter_counts():
    m = tiny()
    assert m.head_dim == 2                 # D/H = 8/4
    assert m.group_size == 2               # H/K = 4/2
    assert m.group_params == 64            # 8*2*(2+2)
    assert m.projection_params == 64       # 4*2*8
    assert m.ffn_params == 384             # 3*8*16
    assert tiny(gated_ffn=False).ffn_params == 256   # 2*8*16
    assert m.embed_params == 80            # 10*8
    assert m.layer_params == 576           # 2*64 + 64 + 384
    assert m.params == 1312                # 2*576 + 2*80 (untied)
    assert tiny(tied_embeddings=True).params == 1232   # 2*576 + 80
    assert m.kv_bytes_per_token() == 32.0  # 2*B*L*K*d*c/8 = 2*1*2*2*2*2


# ----------------------------------------------------------------------------- decode, B=1, 16 bit
def test_decode_costs_tiny_16bit():
    c = decode_costs(tiny(), 1, bits16(), np.array([1, 5]))
    # group FLOPs 2B*params_g + 4B*r*d*S = 2*64 + 4*1*2*2*S = 128 + 16S:  S=1 -> 144, S=5 -> 208
    np.testing.assert_allclose(c.group_flops, [[144, 144], [208, 208]])
    # group read params_g*w/8 + 2B*d*S*c/8 = 64*2 + 2*1*2*S*2 = 128 + 8S:  S=1 -> 136, S=5 -> 168
    np.testing.assert_allclose(c.group_read, [[136, 136], [168, 168]])
    # projection: FLOPs 2B*64 = 128; read 64*2 = 128
    np.testing.assert_allclose(c.projection_flops, 128.0)
    np.testing.assert_allclose(c.projection_read, 128.0)
    # FFN: FLOPs 2B*384 = 768; read 384*2 = 768
    np.testing.assert_allclose(c.ffn_flops, 768.0)
    np.testing.assert_allclose(c.ffn_read, 768.0)
    # embed: one row B*D*w/8 = 1*8*2 = 16 bytes, no FLOPs
    np.testing.assert_allclose(c.embed_read, [16, 16])
    # lm_head: FLOPs 2B*V*D = 2*1*10*8 = 160; read V*D*w/8 = 80*2 = 160
    np.testing.assert_allclose(c.lm_head_flops, [160, 160])
    np.testing.assert_allclose(c.lm_head_read, [160, 160])
    # hidden B*D*a/8 = 8*2 = 16; group output B*r*d*a/8 = 1*2*2*2 = 8; token id 4B = 4
    assert float(c.hidden_bytes) == 16.0
    assert float(c.group_out_bytes) == 8.0
    assert float(c.lm_head_in_bytes) == 16.0
    assert float(c.token_bytes) == 4.0
    assert c.roofline


def test_decode_costs_plain_ffn():
    c = decode_costs(tiny(gated_ffn=False), 1, bits16(), np.array([1]))
    # FFN params 2*8*16 = 256: FLOPs 2*256 = 512, read 256*2 = 512
    np.testing.assert_allclose(c.ffn_flops, 512.0)
    np.testing.assert_allclose(c.ffn_read, 512.0)


# ----------------------------------------------------------------------------- decode, B=2, mixed bits
def mixed_precision():
    # attention 8 bit in layer 0, 16 in layer 1; KV 8; projection 16; FFN 4; embed 16; lm_head 8; activations 8
    return bits16().with_overrides({"attention": [8, 16], "kv": 8, "ffn": 4, "lm_head": 8, "activation": 8})


def test_decode_costs_batch2_mixed_bits():
    c = decode_costs(tiny(), 2, mixed_precision(), np.array([3]))
    # group FLOPs 2B*64 + 4B*r*d*S = 2*2*64 + 4*2*2*2*3 = 256 + 96 = 352 (bits do not change FLOPs)
    np.testing.assert_allclose(c.group_flops, [[352, 352]])
    # group read: layer 0: 64*8/8 + 2*2*2*3*8/8 = 64 + 24 = 88; layer 1: 64*16/8 + 24 = 128 + 24 = 152
    np.testing.assert_allclose(c.group_read, [[88, 152]])
    # projection: FLOPs 2*2*64 = 256; read 64*16/8 = 128
    np.testing.assert_allclose(c.projection_flops, [[256, 256]])
    np.testing.assert_allclose(c.projection_read, [[128, 128]])
    # FFN: FLOPs 2*2*384 = 1536; read 384*4/8 = 192
    np.testing.assert_allclose(c.ffn_flops, [[1536, 1536]])
    np.testing.assert_allclose(c.ffn_read, [[192, 192]])
    # embed read B*D*16/8 = 2*8*2 = 32
    np.testing.assert_allclose(c.embed_read, [32])
    # lm_head: FLOPs 2*2*10*8 = 320; read 80*8/8 = 80
    np.testing.assert_allclose(c.lm_head_flops, [320])
    np.testing.assert_allclose(c.lm_head_read, [80])
    # hidden 2*8*8/8 = 16; group output 2*2*2*8/8 = 8; token 4*2 = 8
    assert float(c.hidden_bytes) == 16.0
    assert float(c.group_out_bytes) == 8.0
    assert float(c.lm_head_in_bytes) == 16.0
    assert float(c.token_bytes) == 8.0


# ----------------------------------------------------------------------------- prefill
def test_prefill_costs_tiny_16bit():
    c = prefill_costs(tiny(), 1, bits16(), 3)
    # group FLOPs P*2B*params_g + 2B*r*d*P*(P+1) = 3*128 + 2*1*2*2*3*4 = 384 + 96 = 480
    np.testing.assert_allclose(c.group_flops, [[480, 480]])
    # group read params_g*2 + 2B*d*P*c/8 (KV written once) = 128 + 2*1*2*3*2 = 128 + 24 = 152
    np.testing.assert_allclose(c.group_read, [[152, 152]])
    # projection FLOPs 3*128 = 384, read unchanged 128; FFN FLOPs 3*768 = 2304, read 768
    np.testing.assert_allclose(c.projection_flops, [[384, 384]])
    np.testing.assert_allclose(c.projection_read, [[128, 128]])
    np.testing.assert_allclose(c.ffn_flops, [[2304, 2304]])
    np.testing.assert_allclose(c.ffn_read, [[768, 768]])
    # embed reads P rows: 3*1*8*2 = 48
    np.testing.assert_allclose(c.embed_read, [48])
    # lm_head for the last position only: 160 FLOPs, 160 bytes
    np.testing.assert_allclose(c.lm_head_flops, [160])
    np.testing.assert_allclose(c.lm_head_read, [160])
    # transfers ×P: hidden 3*16 = 48, group output 3*8 = 24; lm_head input one position 16; token 4
    assert float(np.squeeze(c.hidden_bytes)) == 48.0
    assert float(np.squeeze(c.group_out_bytes)) == 24.0
    assert float(np.squeeze(c.lm_head_in_bytes)) == 16.0
    assert float(c.token_bytes) == 4.0


def test_prefill_costs_batch2_mixed_bits():
    c = prefill_costs(tiny(), 2, mixed_precision(), 2)
    # group FLOPs P*2B*64 + 2B*r*d*P*(P+1) = 2*256 + 2*2*2*2*2*3 = 512 + 96 = 608
    np.testing.assert_allclose(c.group_flops, [[608, 608]])
    # group read: layer 0: 64 + 2*2*2*2*8/8 = 64 + 16 = 80; layer 1: 128 + 16 = 144
    np.testing.assert_allclose(c.group_read, [[80, 144]])
    # FFN FLOPs 2*1536 = 3072, read 192; embed read 2*2*8*2 = 64
    np.testing.assert_allclose(c.ffn_flops, [[3072, 3072]])
    np.testing.assert_allclose(c.ffn_read, [[192, 192]])
    np.testing.assert_allclose(c.embed_read, [64])
    # lm_head: 320 FLOPs, 80 bytes; hidden 2*16 = 32, group output 2*8 = 16, lm input 16, token 8
    np.testing.assert_allclose(c.lm_head_flops, [320])
    np.testing.assert_allclose(c.lm_head_read, [80])
    assert float(np.squeeze(c.hidden_bytes)) == 32.0
    assert float(np.squeeze(c.group_out_bytes)) == 16.0
    assert float(np.squeeze(c.lm_head_in_bytes)) == 16.0
    assert float(c.token_bytes) == 8.0


# ----------------------------------------------------------------------------- resident memory
def test_block_memory_tiny_16bit():
    mem = block_memory(tiny_instance(), bits16(), np.array([4]))
    # group: weights 64*2 = 128, KV 2B*d*S*c/8 = 2*1*2*4*2 = 32 -> 160
    np.testing.assert_allclose(mem.group_weights, [[128, 128]])
    np.testing.assert_allclose(mem.group_kv, [[32, 32]])
    np.testing.assert_allclose(mem.group, [[160, 160]])
    np.testing.assert_allclose(mem.projection, [[128, 128]])   # 64*2
    np.testing.assert_allclose(mem.ffn, [[768, 768]])          # 384*2
    np.testing.assert_allclose(mem.embed, [160])               # 80*2
    np.testing.assert_allclose(mem.lm_head, [160])
    # total: per layer 2*160 + 128 + 768 = 1216; 2 layers 2432; + embed 160 + lm_head 160 = 2752
    np.testing.assert_allclose(mem.total, [2752])


@pytest.mark.parametrize("overrides, total", [
    (None, 2592),              # tied, equal bits: 2432 + 160 (one matrix)
    ({"lm_head": 8}, 2672),    # tied but different bits: 2432 + 160 + 80*8/8 = 2672
])
def test_block_memory_tied(overrides, total):
    prec = bits16().with_overrides(overrides)
    mem = block_memory(tiny_instance({"tied_embeddings": True}), prec, np.array([4]))
    np.testing.assert_allclose(mem.total, [total])


def test_block_memory_batch2_contexts():
    mem = block_memory(tiny_instance(batch=2), bits16(), np.array([1, 10]))
    # KV 2B*d*S*c/8 = 2*2*2*S*2 = 16S: S=1 -> 16, S=10 -> 160; group 128 + 16S -> 144, 288
    np.testing.assert_allclose(mem.group_kv, [[16, 16], [160, 160]])
    np.testing.assert_allclose(mem.group, [[144, 144], [288, 288]])
    # totals: 2*(2*144 + 896) + 320 = 2*1184 + 320 = 2688; 2*(2*288 + 896) + 320 = 2*1472 + 320 = 3264
    np.testing.assert_allclose(mem.total, [2688, 3264])


# ----------------------------------------------------------------------------- kafetzis2025
# The paper's per-head equations (b bytes per element, t = S - P generated tokens), a group
# counting as r = 2 heads, 16 bit -> b = 2:
#   FLOPs  head 3*S*D*d + S^2*d;  projection S*D^2;  FFN 0.8*S*D^2
#   memory head 3*S*d*b + 3*D*d*b, cache t*D*b;  projection S*D*b;  FFN 4*S*D*b
#   sent   head output S*d*b to the projection; projection output S*D*b
def test_kafetzis_step_costs_tiny():
    assert FFN_FLOP_FACTOR == 0.8
    c = kafetzis_step_costs(tiny(), 1, bits16(), np.array([3, 5]))
    # group FLOPs r*(3*S*D*d + S^2*d): S=3: 2*(3*3*8*2 + 9*2) = 2*(144 + 18) = 324
    #                                  S=5: 2*(3*5*8*2 + 25*2) = 2*(240 + 50) = 580
    np.testing.assert_allclose(c.group_flops, [[324, 324], [580, 580]])
    # projection S*D^2: 3*64 = 192, 5*64 = 320
    np.testing.assert_allclose(c.projection_flops, [[192, 192], [320, 320]])
    # FFN 0.8*S*D^2: 0.8*192 = 153.6, 0.8*320 = 256
    np.testing.assert_allclose(c.ffn_flops, [[153.6, 153.6], [256, 256]])
    # FLOPs only (no memory-bandwidth term), embed/lm_head free
    assert not c.roofline
    assert c.sum_gather
    np.testing.assert_allclose(c.group_read, 0)
    np.testing.assert_allclose(c.projection_read, 0)
    np.testing.assert_allclose(c.ffn_read, 0)
    np.testing.assert_allclose(c.embed_read, 0)
    np.testing.assert_allclose(c.lm_head_flops, 0)
    np.testing.assert_allclose(c.lm_head_read, 0)
    # sent: group output r*S*d*b = 2*S*2*2 = 8S -> 24, 40; projection output S*D*b = 16S -> 48, 80
    np.testing.assert_allclose(c.group_out_bytes, [24, 40])
    np.testing.assert_allclose(c.hidden_bytes, [48, 80])
    # no layer-input transfer, nothing to lm_head, no token id
    np.testing.assert_allclose(c.layer_in_bytes, 0)
    np.testing.assert_allclose(c.lm_head_in_bytes, 0)
    assert float(c.token_bytes) == 0.0


def test_kafetzis_step_costs_batch2():
    c = kafetzis_step_costs(tiny(), 2, bits16(), np.array([5]))
    # every figure ×B: group 2*580 = 1160, projection 640, FFN 512; sent 80, 160
    np.testing.assert_allclose(c.group_flops, [[1160, 1160]])
    np.testing.assert_allclose(c.projection_flops, [[640, 640]])
    np.testing.assert_allclose(c.ffn_flops, [[512, 512]])
    np.testing.assert_allclose(c.group_out_bytes, [80])
    np.testing.assert_allclose(c.hidden_bytes, [160])


def test_kafetzis_block_memory_tiny():
    P = 3
    mem = kafetzis_block_memory(tiny(), 1, bits16(), np.array([3, 5]), P)
    # group weights r*3*D*d*b = 2*3*8*2*2 = 192
    np.testing.assert_allclose(mem.group_weights, [[192, 192], [192, 192]])
    # group cache r*(3*S*d*b + t*D*b), t = S - P:
    #   S=3, t=0: 2*(3*3*2*2 + 0) = 2*36 = 72
    #   S=5, t=2: 2*(3*5*2*2 + 2*8*2) = 2*(60 + 32) = 184
    np.testing.assert_allclose(mem.group_kv, [[72, 72], [184, 184]])
    np.testing.assert_allclose(mem.group, [[264, 264], [376, 376]])
    # projection S*D*b: 3*8*2 = 48, 5*8*2 = 80;  FFN 4*S*D*b: 192, 320
    np.testing.assert_allclose(mem.projection, [[48, 48], [80, 80]])
    np.testing.assert_allclose(mem.ffn, [[192, 192], [320, 320]])
    np.testing.assert_allclose(mem.embed, 0)
    np.testing.assert_allclose(mem.lm_head, 0)
    # total L*(K*group + projection + FFN): S=3: 2*(2*264 + 48 + 192) = 2*768 = 1536
    #                                        S=5: 2*(2*376 + 80 + 320) = 2*1152 = 2304
    np.testing.assert_allclose(mem.total, [1536, 2304])


def test_kafetzis_block_memory_via_instance_profile():
    # block_memory dispatches on the instance's profile; same numbers as above.
    inst = tiny_instance(profile="kafetzis2025", P=3)
    mem = block_memory(inst, bits16(), np.array([5]))
    np.testing.assert_allclose(mem.group, [[376, 376]])
    np.testing.assert_allclose(mem.total, [2304])


@pytest.mark.parametrize("profile, blocks", [("roofline", 10), ("kafetzis2025", 8)])
def test_block_overhead_adds_once_per_block_run(profile, blocks):
    """One device, L=2, K=2: a decode step runs L·K groups + L projections + L FFNs + embed + lm_head
    = 10 blocks, and so does the prefill (each block once over the whole prompt); a 0.1 ms
    overhead per block run adds exactly 1 ms to each. The paper's profile gives embed and
    lm_head no work, so they cost no overhead there: 8 blocks, 0.8 ms."""
    def instance(overhead):
        return instance_from_dict({
            "model": {"name": "tiny", "layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "ffn_hidden": 128, "gated_ffn": True, "tied_embeddings": False,
                      "vocab": 256},
            "devices": [{"name": "A", "memory": "1 GiB", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 GB/s",
                         "block_overhead": overhead}],
            "workload": {"prompt_tokens": 8, "generate_tokens": 5, "profile": profile},
        })
    from placement import evaluate, solve

    plain, slow = instance("0 s"), instance("0.1 ms")
    base = evaluate(plain, solve(plain, method="single").plan)
    with_overhead = evaluate(slow, solve(slow, method="single").plan)
    np.testing.assert_allclose(with_overhead.decode_s - base.decode_s, blocks * 1e-4, rtol=1e-9)
    assert with_overhead.ttft_s - base.ttft_s == pytest.approx(blocks * 1e-4, rel=1e-9)


def test_block_overhead_must_not_be_negative():
    from placement.errors import InputError

    with pytest.raises(InputError, match="block_overhead"):
        instance_from_dict({
            "model": "gpt2",
            "devices": [{"name": "A", "memory": "8 GiB", "peak_flops": "1 TFLOPS", "memory_bandwidth": "10 GB/s",
                         "block_overhead": "-1 ms"}],
            "workload": {"prompt_tokens": 8, "generate_tokens": 5},
        })
