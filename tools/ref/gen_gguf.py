#!/usr/bin/env python3
"""GGUF fixtures, written with the `gguf` package (the one llama.cpp's converters use).

  tests/fixtures/gguf/metadata.gguf + metadata.json   one key of every GGUF value type
  tests/fixtures/gguf/quants.gguf                       one [4, 512] tensor per quant type
  tests/fixtures/ref/gguf_quants.safetensors            their float32 dequantized values
  tests/fixtures/gguf/tiny-llama.gguf                   tests/fixtures/models/llama as GGUF
  tests/fixtures/ref/tiny-llama-gguf.safetensors        logits / greedy of that GGUF's weights

Run after gen_decoders.py (tiny-llama.gguf is converted from the llama fixture folder).
See tools/ref/README.md.
"""

from __future__ import annotations

import common as C  # sets the determinism environment first

import json
import struct
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as VT

GENERATOR = "tools/ref/gen_gguf.py"


class Writer(gguf.GGUFWriter):
    """GGUFWriter that can also write an empty array (the stock writer refuses; the format allows
    it: element type, then count 0)."""

    def _pack_val(self, val, vtype, add_vtype, sub_type=None):
        if vtype == VT.ARRAY and isinstance(val, (list, tuple)) and len(val) == 0:
            out = bytearray()
            if add_vtype:
                out += self._pack("I", vtype)
            out += self._pack("I", sub_type if sub_type is not None else VT.INT32)
            out += self._pack("Q", 0)
            return bytes(out)
        return super()._pack_val(val, vtype, add_vtype, sub_type=sub_type)


def write_gguf(w: Writer) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# --------------------------------------------------------------------------------------------
# metadata.gguf
# --------------------------------------------------------------------------------------------
TYPE_NAMES = {VT.UINT8: "uint8", VT.INT8: "int8", VT.UINT16: "uint16", VT.INT16: "int16", VT.UINT32: "uint32",
              VT.INT32: "int32", VT.UINT64: "uint64", VT.INT64: "int64", VT.FLOAT32: "float32",
              VT.FLOAT64: "float64", VT.BOOL: "bool", VT.STRING: "string", VT.ARRAY: "array"}

# (key, type, value[, element type for arrays])
METADATA_KEYS = [
    ("test.u8", VT.UINT8, 200),
    ("test.i8", VT.INT8, -100),
    ("test.u16", VT.UINT16, 60000),
    ("test.i16", VT.INT16, -30000),
    ("test.u32", VT.UINT32, 4000000000),
    ("test.i32", VT.INT32, -2000000000),
    ("test.u64", VT.UINT64, 18000000000000000000),
    ("test.i64", VT.INT64, -9000000000000000000),
    ("test.f32", VT.FLOAT32, 3.25),
    ("test.f32_inexact", VT.FLOAT32, 0.1),
    ("test.f64", VT.FLOAT64, 2.718281828459045),
    ("test.bool_true", VT.BOOL, True),
    ("test.bool_false", VT.BOOL, False),
    ("test.str", VT.STRING, "héllo wörld 🙂 中文 \"quoted\"\ttab\nnewline"),
    ("test.str_empty", VT.STRING, ""),
    ("test.arr_u8", VT.ARRAY, [0, 1, 255], VT.UINT8),
    ("test.arr_i8", VT.ARRAY, [-128, 0, 127], VT.INT8),
    ("test.arr_u16", VT.ARRAY, [0, 65535], VT.UINT16),
    ("test.arr_i16", VT.ARRAY, [-32768, 0, 32767], VT.INT16),
    ("test.arr_u32", VT.ARRAY, [0, 1, 4294967295], VT.UINT32),
    ("test.arr_i32", VT.ARRAY, [-2147483648, -1, 0, 2147483647], VT.INT32),
    ("test.arr_u64", VT.ARRAY, [0, 18446744073709551615], VT.UINT64),
    ("test.arr_i64", VT.ARRAY, [-9223372036854775808, 9223372036854775807], VT.INT64),
    ("test.arr_f32", VT.ARRAY, [0.5, -1.25, 1024.0, 0.1], VT.FLOAT32),
    ("test.arr_f64", VT.ARRAY, [1.0e-300, -2.5, 3.141592653589793], VT.FLOAT64),
    ("test.arr_bool", VT.ARRAY, [True, False, True], VT.BOOL),
    ("test.arr_str", VT.ARRAY, ["a", "", "héllo 🙂", "two\nlines"], VT.STRING),
    ("test.arr_empty", VT.ARRAY, [], VT.INT32),
]
METADATA_ALIGNMENT = 64  # general.alignment, not the default 32, so readers must honour it


def json_value(vtype, value, sub=None):
    """Expected value as JSON: integers exact, float32 as the double nearest the stored float32."""
    if vtype == VT.FLOAT32:
        return float(np.float32(value))
    if vtype == VT.ARRAY:
        return [json_value(sub, v) for v in value]
    return value


def gen_metadata(out: Path) -> None:
    path = out / "gguf" / "metadata.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    w = Writer(str(path), "test")
    w.add_custom_alignment(METADATA_ALIGNMENT)
    for k in METADATA_KEYS:
        key, vtype, value = k[:3]
        sub = k[3] if len(k) > 3 else None
        w.add_key_value(key, value, vtype, sub_type=sub)
    t_f32 = np.arange(6, dtype=np.float32).reshape(2, 3) * np.float32(0.5) - np.float32(1.0)
    t_f16 = np.array([1.0, -2.0, 0.5, 65504.0], dtype=np.float16)
    t_i32 = np.array([-7, 0, 7], dtype=np.int32)
    tensors = [("t_f32", t_f32, "F32"), ("t_f16", t_f16, "F16"), ("t_i32", t_i32, "I32")]
    for name, arr, _ in tensors:
        w.add_tensor(name, arr)
    write_gguf(w)

    kv = [{"key": "general.architecture", "type": "string", "value": "test"},
          {"key": "general.alignment", "type": "uint32", "value": METADATA_ALIGNMENT}]
    for k in METADATA_KEYS:
        key, vtype, value = k[:3]
        sub = k[3] if len(k) > 3 else None
        e = {"key": key, "type": TYPE_NAMES[vtype], "value": json_value(vtype, value, sub)}
        if sub is not None:
            e["element_type"] = TYPE_NAMES[sub]
        kv.append(e)
    doc = {
        "file": "metadata.gguf",
        "generator": GENERATOR,
        "gguf_version": 3,
        "alignment": METADATA_ALIGNMENT,
        "kv_count": len(kv),
        "kv": kv,
        "tensors": [{"name": n, "type": t, "ne": list(reversed(a.shape)), "shape": list(a.shape),
                     "values": [float(x) if a.dtype.kind == "f" else int(x) for x in a.reshape(-1)]}
                    for n, a, t in tensors],
        "notes": "kv in file order; ne = GGUF dimension order (innermost first), shape = row-major "
                 "(numpy) order; float32 values are the doubles nearest the stored float32.",
    }
    C.dump_json(out / "gguf" / "metadata.json", doc)

    # read back with the reference reader
    r = gguf.GGUFReader(str(path))
    assert r.alignment == METADATA_ALIGNMENT
    for e in kv:
        f = r.get_field(e["key"])
        assert f is not None, e["key"]
        got = f.contents() if not (e["type"] == "array" and not e["value"]) else []
        if e["type"] in ("float32",) or e.get("element_type") == "float32":
            assert np.allclose(got, e["value"], rtol=0, atol=0), e
        else:
            assert got == e["value"], (e, got)
    C.log(f"  metadata.gguf: {len(kv)} keys, {len(tensors)} tensors")


# --------------------------------------------------------------------------------------------
# quants.gguf
# --------------------------------------------------------------------------------------------
QUANT_TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1,
               Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]
QUANT_SHAPE = (4, 512)
# exact: dequantization is a single exactly-representable product (or a plain conversion)
EXACT = {Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q5_0}
# Byte offsets of the fp16 fields inside one block, and the range we give them, for the K-quants
# (gguf.quants has no quantizer for them): (offset of d, offset of dmin or None, d range, dmin range)
K_FIELDS = {
    Q.Q2_K: (80, 82, (0.02, 0.2), (0.01, 0.1)),
    Q.Q3_K: (108, None, (0.01, 0.1), None),
    Q.Q4_K: (0, 2, (0.005, 0.02), (0.005, 0.02)),
    Q.Q5_K: (0, 2, (0.001, 0.005), (0.001, 0.01)),
    Q.Q6_K: (208, None, (0.0005, 0.002), None),
}


def random_k_blocks(rng, qtype, shape) -> np.ndarray:
    block, tsize = gguf.GGML_QUANT_SIZES[qtype]
    rows, cols = shape
    nb = rows * cols // block
    raw = rng.integers(0, 256, size=(nb, tsize), dtype=np.uint8)
    d_off, m_off, d_rng, m_rng = K_FIELDS[qtype]
    d = rng.uniform(*d_rng, size=nb).astype(np.float16)
    raw[:, d_off:d_off + 2] = d.view(np.uint8).reshape(nb, 2)
    if m_off is not None:
        m = rng.uniform(*m_rng, size=nb).astype(np.float16)
        raw[:, m_off:m_off + 2] = m.view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, cols // block * tsize)


def gen_quants(out: Path) -> None:
    rng = np.random.default_rng(3001)
    path = out / "gguf" / "quants.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    w = Writer(str(path), "test")
    refs: dict[str, np.ndarray] = {}
    tol: dict[str, float] = {}
    raws = {}
    for qt in QUANT_TYPES:
        name = qt.name.lower()
        data = rng.standard_normal(QUANT_SHAPE).astype(np.float32)
        if qt == Q.F32:
            raw, ref = data, data.copy()
            w.add_tensor(name, raw)
        elif qt == Q.F16:
            raw = data.astype(np.float16)
            ref = raw.astype(np.float32)
            w.add_tensor(name, raw)
        else:
            if qt in K_FIELDS:
                raw = random_k_blocks(rng, qt, QUANT_SHAPE)
            else:
                raw = gguf.quants.quantize(data, qt)
            ref = gguf.quants.dequantize(raw, qt)
            w.add_tensor(name, raw, raw_dtype=qt)
        assert ref.shape == QUANT_SHAPE and ref.dtype == np.float32 and np.isfinite(ref).all(), name
        assert float(np.abs(ref).max()) <= 16.0, (name, float(np.abs(ref).max()))
        refs[name] = np.ascontiguousarray(ref)
        raws[name] = raw
        tol[name] = 0.0 if qt in EXACT else 1e-5
    write_gguf(w)

    r = gguf.GGUFReader(str(path))
    for t in r.tensors:
        qt = Q(t.tensor_type)
        assert list(t.shape) == list(reversed(QUANT_SHAPE)), (t.name, t.shape)
        back = gguf.quants.dequantize(np.asarray(t.data), qt).reshape(QUANT_SHAPE)
        assert np.array_equal(back, refs[t.name]), t.name

    md = C.base_metadata("gguf_quants", GENERATOR, tol, [])
    md.update({"kind": "gguf-quants", "gguf_file": "tests/fixtures/gguf/quants.gguf",
               "ggml_types": json.dumps({qt.name.lower(): int(qt) for qt in QUANT_TYPES}, sort_keys=True)})
    C.write_safetensors(out / "ref" / "gguf_quants.safetensors", refs, md)
    C.log(f"  quants.gguf: {len(QUANT_TYPES)} tensors of {QUANT_SHAPE}")


# --------------------------------------------------------------------------------------------
# tiny-llama.gguf
# --------------------------------------------------------------------------------------------
def permute_rope(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute: Hugging Face stores q/k rows so that
    RoPE rotates (x[i], x[i + d/2]) pairs ("rotate_half"); GGUF llama expects the interleaved
    (x[2i], x[2i+1]) pairs, so the rows of each head are reordered."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def spm_tokenize(text: str, vocab: dict[str, int], scores: list[float]) -> list[int]:
    """llama.cpp's SPM tokenizer (llm_tokenizer_spm) without special-token parsing: prefix a
    space, spaces -> ▁, start from UTF-8 characters, repeatedly merge the adjacent pair whose
    concatenation is in the vocabulary with the highest score (leftmost on ties), then spell
    pieces that are not in the vocabulary as <0xNN> byte tokens."""
    text = "▁" + text.replace(" ", "▁")
    syms = list(text)
    while True:
        best = None
        for i in range(len(syms) - 1):
            t = syms[i] + syms[i + 1]
            if t in vocab:
                s = scores[vocab[t]]
                if best is None or s > best[0]:
                    best = (s, i)
        if best is None:
            break
        i = best[1]
        syms[i:i + 2] = [syms[i] + syms[i + 1]]
    ids = []
    for s in syms:
        if s in vocab:
            ids.append(vocab[s])
        else:
            ids.extend(vocab["<0x%02X>" % b] for b in s.encode("utf-8"))
    return ids


def gen_tiny_llama(out: Path) -> None:
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import gen_decoders as D

    folder = out / "models" / "llama"
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tok_json = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tcfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    weights = load_file(str(folder / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head

    # vocabulary: ids 0..V-1 (BPE vocab + added tokens)
    vocab = dict(tok_json["model"]["vocab"])
    for at in tok_json["added_tokens"]:
        vocab[at["content"]] = at["id"]
    V = cfg["vocab_size"]
    assert sorted(vocab.values()) == list(range(V)), "vocabulary ids are not dense"
    tokens = [None] * V
    for t, i in vocab.items():
        tokens[i] = t
    specials = {at["id"]: at["content"] for at in tok_json["added_tokens"] if at["special"]}
    first_trained = 1 + max(i for i, t in enumerate(tokens) if t in specials or t.startswith("<0x"))
    scores, types = [], []
    for i, t in enumerate(tokens):
        if i in specials:
            types.append(gguf.TokenType.UNKNOWN if t == tok_json["model"]["unk_token"] else gguf.TokenType.CONTROL)
            scores.append(0.0)
        elif t.startswith("<0x") and len(t) == 6:
            types.append(gguf.TokenType.BYTE)
            scores.append(0.0)
        else:
            types.append(gguf.TokenType.NORMAL)
            # pieces are in merge order, so a decreasing score reproduces the BPE merge priority
            scores.append(-float(i - first_trained))

    path = out / "gguf" / "tiny-llama.gguf"
    w = Writer(str(path), "llama")
    w.add_name("eft tiny llama")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(float(cfg["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_vocab_size(V)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types([int(t) for t in types])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_unk_token_id(vocab[tok_json["model"]["unk_token"]])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(tcfg["chat_template"])

    # (gguf name, hf name, storage type, permute)
    plan = [("token_embd.weight", "model.embed_tokens.weight", Q.F16, None)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        plan += [
            (f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight", Q.F32, None),
            (f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight", Q.F16, (n_head, n_head)),
            (f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight", Q.F16, (n_head, n_kv)),
            (f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight", Q.F16, None),
            (f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight", Q.F16, None),
            (f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight", Q.F32, None),
            (f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight", Q.F16, None),
            (f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight", Q.F16, None),
            (f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight",
             Q.Q8_0 if i == cfg["num_hidden_layers"] - 1 else Q.F16, None),
        ]
    plan += [("output_norm.weight", "model.norm.weight", Q.F32, None),
             ("output.weight", "lm_head.weight", Q.F32, None)]
    assert set(weights) == {h for _, h, _, _ in plan}, set(weights) ^ {h for _, h, _, _ in plan}

    effective: dict[str, np.ndarray] = {}  # HF name -> the float32 values the GGUF really holds
    stored: dict[str, tuple] = {}
    for gname, hname, qt, perm in plan:
        wt = weights[hname].astype(np.float32)
        if qt == Q.F32:
            raw, eff = wt, wt
        elif qt == Q.F16:
            raw = wt.astype(np.float16)
            eff = raw.astype(np.float32)
        else:
            raw = gguf.quants.quantize(wt, qt)
            eff = gguf.quants.dequantize(raw, qt)
        effective[hname] = eff
        if perm is not None:
            raw = permute_rope(raw, *perm)
        stored[gname] = (raw, qt)
        w.add_tensor(gname, raw, raw_dtype=qt if qt not in (Q.F32, Q.F16) else None)
    write_gguf(w)

    # read back: every tensor matches, q/k un-permute to the HF rows
    r = gguf.GGUFReader(str(path))
    inv = {g: (h, perm) for g, h, _, perm in plan}
    for t in r.tensors:
        h, perm = inv[t.name]
        vals = gguf.quants.dequantize(np.asarray(t.data), Q(t.tensor_type)).reshape(weights[h].shape)
        if perm is not None:
            # undo the row permutation: out[j] = in[idx[j]]  =>  in[idx] = out
            idx = permute_rope(np.arange(vals.shape[0]), *perm)
            un = np.empty_like(vals)
            un[idx] = vals
            vals = un
        assert np.array_equal(vals, effective[h]), t.name

    # llama.cpp's SPM algorithm on these scores gives the same ids as the HF tokenizer
    hf_tok = AutoTokenizer.from_pretrained(str(folder))
    for text in D.PROMPTS + C.CORPUS:
        want = hf_tok(text, add_special_tokens=False)["input_ids"]
        assert spm_tokenize(text, vocab, scores) == want, text

    # references: the llama model with the weights as stored in the GGUF
    model = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager",
                                                 dtype=torch.float32).eval()
    sd = model.state_dict()
    with torch.no_grad():
        for h, eff in effective.items():
            sd[h].copy_(torch.from_numpy(eff))
    tensors, margin = D.reference_run(model, hf_tok, D.PROMPTS)
    assert margin >= 1e-4, f"tiny-llama-gguf: greedy margin {margin:.2e}"
    md = C.base_metadata("tiny-llama-gguf", GENERATOR, {"logits": 1e-4, "greedy": 0}, D.PROMPTS)
    md.update({"kind": "decoder", "model_dir": "tests/fixtures/gguf/tiny-llama.gguf",
               "hf_model_dir": "tests/fixtures/models/llama", "max_new_tokens": str(D.N_NEW),
               "eos_stops": "false", "min_greedy_margin": "%.6g" % margin,
               "tensor_types": json.dumps({g: qt.name for g, (_, qt) in stored.items()}, sort_keys=True)})
    C.write_safetensors(out / "ref" / "tiny-llama-gguf.safetensors", tensors, md)
    C.log(f"  tiny-llama.gguf: {len(plan)} tensors, vocab {V}, min greedy margin {margin:.3g}")


def main() -> None:
    args = C.arg_parser(__doc__).parse_args()
    out = Path(args.out)
    if C.selected("metadata", args.only):
        gen_metadata(out)
    if C.selected("quants", args.only):
        gen_quants(out)
    if C.selected("tiny-llama", args.only):
        gen_tiny_llama(out)


if __name__ == "__main__":
    main()
