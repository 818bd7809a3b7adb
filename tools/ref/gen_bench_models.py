#!/usr/bin/env python3
"""A Llama-3.2-1B-shaped Hugging Face folder with random weights, for benchmarking.

hidden 2048, 16 layers, 32 attention heads and 8 KV heads of 64, FFN 8192, untied lm_head, vocabulary
32000 by default; weights random normal (std 0.02, norm weights 1) stored as bfloat16 in one
model.safetensors (1.10 B parameters, 2.21 GB; with SmolLM2's tokenizer, vocabulary 49152: 1.17 B,
2.35 GB). By default the tokenizer files are copied from a small fixture folder
(tests/fixtures/models/llama, 495 ids), so random greedy decoding will produce ids the tokenizer
does not know: fine for timing the model, but a detokenizer must tolerate them (or take the
tokenizer from SmolLM2's GGUF with --tokenizer-gguf, which needs transformers and torch, or point
--tokenizer-dir at a folder exported that way on another machine). Nothing here is a
reference: the folder is for speed measurements only and is never committed (models/ is ignored).

Needs only numpy (no torch, no safetensors package; transformers + torch only for --tokenizer-gguf): the
safetensors file is written by hand, tensor by tensor, so memory stays at one chunk of 64 MiB.
Deterministic: the same arguments give a byte-identical folder.

    python tools/ref/gen_bench_models.py [OUT_DIR] [--vocab N] [--seed 1234] [--tokenizer-dir DIR]
        [--tokenizer-gguf models/SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf]
    (OUT_DIR defaults to models/bench-llama-1b)
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]

SHAPE = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
             head_dim=64, intermediate_size=8192, max_position_embeddings=8192)
STD = 0.02
CHUNK = 1 << 24  # elements generated and converted at a time (64 MiB of float32)


def tensor_list(vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) in file order: the usual Hugging Face Llama names."""
    H, F = SHAPE["hidden_size"], SHAPE["intermediate_size"]
    q = SHAPE["num_attention_heads"] * SHAPE["head_dim"]
    kv = SHAPE["num_key_value_heads"] * SHAPE["head_dim"]
    out = [("model.embed_tokens.weight", (vocab, H))]
    for i in range(SHAPE["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (H,)),
                (p + "self_attn.q_proj.weight", (q, H)),
                (p + "self_attn.k_proj.weight", (kv, H)),
                (p + "self_attn.v_proj.weight", (kv, H)),
                (p + "self_attn.o_proj.weight", (H, q)),
                (p + "post_attention_layernorm.weight", (H,)),
                (p + "mlp.gate_proj.weight", (F, H)),
                (p + "mlp.up_proj.weight", (F, H)),
                (p + "mlp.down_proj.weight", (H, F))]
    out += [("model.norm.weight", (H,)), ("lm_head.weight", (vocab, H))]
    return out


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest even (the values are finite)."""
    u = x.view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def write_model(path: Path, vocab: int, seed: int) -> int:
    tensors = tensor_list(vocab)
    header: dict = {"__metadata__": {"format": "pt", "generator": "tools/ref/gen_bench_models.py",
                                     "seed": str(seed), "std": str(STD)}}
    offset = 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    one = to_bf16(np.ones(1, dtype=np.float32))
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for k, (name, shape) in enumerate(tensors):
            n = int(np.prod(shape))
            if len(shape) == 1:  # RMSNorm weights: 1, as a freshly initialised Llama has them
                f.write(np.repeat(one, n).astype("<u2").tobytes())
                continue
            rng = np.random.default_rng([seed, k])  # one stream per tensor: order-independent
            left = n
            while left:
                m = min(left, CHUNK)
                x = rng.standard_normal(m, dtype=np.float32)
                x *= np.float32(STD)
                f.write(to_bf16(x).astype("<u2").tobytes())
                left -= m
    size = path.stat().st_size
    assert size == 8 + len(hbytes) + offset, (size, offset)
    return size


def export_gguf_tokenizer(gguf_path: Path, into: Path) -> Path:
    """Write the tokenizer held in a GGUF file as a Hugging Face tokenizer folder (needs transformers,
    gguf and torch: transformers' GGUF reader imports torch even for the tokenizer)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tok.save_pretrained(str(into))
    special = {k: str(getattr(tok, k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")
               if getattr(tok, k, None) is not None}
    (into / "special_tokens_map.json").write_text(json.dumps(special, indent=2, sort_keys=True) + "\n",
                                                  encoding="utf-8")
    return into


def write_folder(out: Path, vocab: int | None, seed: int, tok_dir: Path) -> None:
    tj = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    mv = tj["model"]["vocab"]
    ids = dict(mv) if isinstance(mv, dict) else {p[0]: i for i, p in enumerate(mv)}  # BPE/WordPiece or Unigram
    ids.update({t["content"]: t["id"] for t in tj.get("added_tokens", [])})
    n_tok = max(ids.values()) + 1
    if vocab is None:
        vocab = 32000 if n_tok <= 32000 else n_tok
    if n_tok > vocab:
        raise SystemExit(f"gen_bench_models: the tokenizer in {tok_dir} has {n_tok} ids, more than --vocab {vocab}")
    stm = json.loads((tok_dir / "special_tokens_map.json").read_text(encoding="utf-8"))
    bos, eos = ids.get(stm.get("bos_token")), ids.get(stm.get("eos_token"))

    out.mkdir(parents=True, exist_ok=True)
    for f in ("tokenizer.json", "special_tokens_map.json", "chat_template.jinja"):
        if (tok_dir / f).exists():
            shutil.copyfile(tok_dir / f, out / f)
    tc = json.loads((tok_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    tc["model_max_length"] = SHAPE["max_position_embeddings"]
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "hidden_act": "silu",
        "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": None,
        "initializer_range": STD, "rms_norm_eps": 1e-05, "pretraining_tp": 1,
        "rope_theta": 500000.0, "rope_scaling": None, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": vocab, **SHAPE,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    gen = {"bos_token_id": bos, "eos_token_id": eos, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    t0 = time.time()
    size = write_model(out / "model.safetensors", vocab, seed)
    n_params = sum(int(np.prod(s)) for _, s in tensor_list(vocab))
    print(f"gen_bench_models: {out}: {n_params / 1e9:.3f} B parameters, model.safetensors {size / 1e9:.2f} GB "
          f"(bf16), {time.time() - t0:.0f} s", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=str(REPO_ROOT / "models" / "bench-llama-1b"))
    ap.add_argument("--vocab", type=int, default=None,
                    help="embedding / lm_head rows (default 32000, or the tokenizer's size when that is larger)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--tokenizer-dir", default=str(REPO_ROOT / "tests" / "fixtures" / "models" / "llama"),
                    help="folder whose tokenizer.json, tokenizer_config.json, special_tokens_map.json are copied")
    ap.add_argument("--tokenizer-gguf", default=None,
                    help="take the tokenizer from this GGUF instead (needs transformers and torch), e.g. "
                         "models/SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf: vocabulary 49152")
    args = ap.parse_args()
    tok_dir = Path(args.tokenizer_dir)
    if args.tokenizer_gguf:
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="eft-bench-tok."))
        try:
            write_folder(Path(args.out), args.vocab, args.seed, export_gguf_tokenizer(Path(args.tokenizer_gguf), tmp))
        finally:
            shutil.rmtree(tmp)
        return
    write_folder(Path(args.out), args.vocab, args.seed, tok_dir)


if __name__ == "__main__":
    main()
