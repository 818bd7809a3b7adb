#!/usr/bin/env python3
"""Reference outputs of two real published decoders, read from their quantised GGUF files.

Makes tests/fixtures/ref/smollm2-135m-q4_1.safetensors (HuggingFaceTB/SmolLM2-135M-Instruct, GGUF
Q4_1, llama architecture) and tests/fixtures/ref/gemma-3-270m-q4_k_m.safetensors (google/gemma-3-270m,
GGUF Q4_K_M, gemma3). The models themselves are fetched, not committed (scripts/fetch_models.py puts
them under models/, which git ignores); only these small reference files are. transformers reads
each GGUF by dequantising every tensor to float32 (gguf-py's numpy dequantiser), so the references
are "the published quantised weights, computed exactly in float32". See tools/ref/README.md.

    HF_HUB_OFFLINE=1 python tools/ref/gen_real_decoders.py [--out tests/fixtures] [--only smollm2-135m-q4_1]
        [--models-dir models]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C  # noqa: E402  (sets the single-thread / offline environment first)

import json  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

GENERATOR = "tools/ref/gen_real_decoders.py"
N_NEW = 64
TOP_K = 64  # prompt{i}.top_ids / .top_logits: the largest last-position logits, for every prompt
LONG_MIN_TOKENS = 129  # the long prompt must be longer than 128 tokens in every tokenizer
# Full last-position logits ([V] float32) are stored while the file stays under about this size:
# all five prompts for SmolLM2 (V 49152: 192 KiB each), only prompt 0 for Gemma 3 (V 262144: 1 MiB).
LAST_LOGITS_BUDGET = 1_200_000
# Absolute tolerance for last_logits / top_logits. The references are float32 computations on
# dequantised weights; the same model in float64 differs from them by up to about 1e-4 (measured by
# this script and recorded as f64_last_logits_maxdiff), so 1e-3 leaves a C implementation that
# dequantises to float32 room for another summation order and FMA, and nothing more. An engine that
# quantises activations (llama.cpp's Q8_K dot products) will not meet it, nor is it meant to.
TOLERANCE = {"last_logits": 1e-3, "greedy": 0}

MODELS = {
    "smollm2-135m-q4_1": "SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma-3-270m-q4_k_m": "gemma-3-270m-Q4_K_M/gemma-3-270m-q4_k_m.gguf",
}

CHAT = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]
# gemma-3-270m's GGUF carries no tokenizer.chat_template; its turn format written out by hand (as
# Gemma 3's published template renders one user message with add_generation_prompt), without the
# leading <bos>, which the tokenizer adds itself.
GEMMA_CHAT_RENDERED = ("<start_of_turn>user\n" + CHAT[0]["content"] + "<end_of_turn>\n"
                       "<start_of_turn>model\n")

PROMPTS_FIXED = [
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    None,  # the chat prompt, rendered per model
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Bonjour tout le monde! Wie geht es dir? 東京は日本の首都です。Привет, мир! ¿Qué tal? 🙂",
    ("The history of computing is a story of layers. At the bottom are transistors, tiny switches "
     "that are either on or off. Above them sit logic gates, which combine switches into simple "
     "decisions, and above those, arithmetic units, registers and memory. Processors fetch "
     "instructions from memory, decode them and execute them, millions of times per second. "
     "Operating systems share the processor among many programs, give each one the illusion of "
     "its own memory, and manage files, networks and devices. Compilers translate languages that "
     "people can read into instructions that machines can run. Libraries collect solutions to "
     "common problems so that nobody has to write them twice. On top of all this, applications "
     "let people write letters, keep accounts, draw pictures, talk to friends on the other side "
     "of the world and, more recently, ask questions of language models that were trained on a "
     "large part of everything that was ever written down. Each layer hides the details of the "
     "one below it, and that is why"),
]


def dequant_route(gguf_path: Path) -> tuple[dict, dict[str, str]]:
    """-> (the route transformers takes to floats, {tensor name: GGML type})."""
    from gguf import GGUFReader

    import transformers.modeling_gguf_pytorch_utils as legacy
    from transformers.integrations.gguf.utils import is_gguf_arch_supported

    reader = GGUFReader(str(gguf_path))
    arch = reader.fields["general.architecture"].contents()
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    # transformers 5 has two GGUF loaders: a newer one that can keep blocks packed (only for the
    # architectures it lists) and the legacy one. llama and gemma3 go through the legacy one.
    assert not is_gguf_arch_supported(arch), f"{arch}: transformers now uses its packed-GGUF loader"
    processor = legacy.TENSOR_PROCESSORS.get(arch, legacy.TensorProcessor).__name__
    post = {"LlamaTensorProcessor": "attn_q / attn_k rows un-permuted back from llama.cpp's interleaved "
                                    "RoPE order to Hugging Face's rotate_half order",
            "Gemma2TensorProcessor": "1 subtracted from every *norm.weight (the GGUF stores Gemma's 1 + w; "
                                     "the model adds the 1 back)"}.get(processor, "none")
    route = {
        "loader": "transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint (legacy GGUF loader)",
        "dequantize": "gguf.quants.dequantize (gguf-py, numpy, float32) on every tensor",
        "tensor_processor": processor,
        "after_dequantize": post,
        "dtype": "float32",
        "ggml_types": dict(sorted(Counter(types.values()).items())),
        "dequantized_types": sorted({v for v in types.values() if v not in ("F32",)}),
    }
    return route, types


def load(gguf_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    assert model.config._attn_implementation == "eager"
    # every weight must be a plain float32 tensor: no packed GGUF modules left in the model
    for pname, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.is_floating_point(), pname
    for mname, m in model.named_modules():
        assert "gguf" not in type(m).__name__.lower(), (mname, type(m).__name__)
    return tok, model


def prompts_for(name: str, tok) -> tuple[list[str], dict]:
    prompts = list(PROMPTS_FIXED)
    if tok.chat_template:
        rendered = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
        ids = tok.apply_chat_template(CHAT, tokenize=True, add_generation_prompt=True, return_dict=False)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        # tokenizing the rendered text the default way must give what apply_chat_template gives
        assert list(tok(rendered)["input_ids"]) == list(ids), name
        source = "the GGUF's tokenizer.chat_template, rendered by transformers' apply_chat_template"
    else:
        assert name.startswith("gemma"), name
        rendered = GEMMA_CHAT_RENDERED
        source = ("none in the GGUF: Gemma 3's turn format written out by hand; <bos> is not in the "
                  "text, the tokenizer adds it")
    prompts[1] = rendered
    chat = {"messages": CHAT, "add_generation_prompt": True, "rendered": rendered, "template": source}
    return prompts, chat


def margins(logits: torch.Tensor) -> torch.Tensor:
    """logits [N, V] -> top1 - top2 per row [N]."""
    top2 = logits.topk(2, dim=-1).values
    return top2[:, 0] - top2[:, 1]


def reference_run(name: str, tok, model, prompts: list[str]):
    from transformers import GenerationConfig

    V = model.config.vocab_size
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    # Explicit: plain argmax for exactly N_NEW tokens. eos_token_id None so that an EOS token does
    # not stop generation; no repetition penalty, temperature, top-k/p or other processors.
    gen_cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=N_NEW, min_new_tokens=0,
                               eos_token_id=None, pad_token_id=pad, bos_token_id=None,
                               repetition_penalty=1.0, no_repeat_ngram_size=0, temperature=None,
                               top_k=None, top_p=None, use_cache=True)
    # generate() fills values the passed config leaves at their defaults (eos_token_id None among
    # them) from model.generation_config, which has the GGUF's EOS: replace that one too.
    model.generation_config = gen_cfg
    tensors: dict[str, np.ndarray] = {}
    info = {"margins": [], "cache_vs_full_maxdiff": 0.0, "f64_maxdiff": 0.0, "n_tokens": [],
            "decoded": [], "last_logits_prompts": []}
    size = 0
    model64 = None
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            ids = torch.tensor([tok(prompt)["input_ids"]], dtype=torch.long)
            T = ids.shape[1]
            last = model(input_ids=ids, logits_to_keep=1).logits[0, -1]
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg,
                                 output_logits=True, return_dict_in_generate=True)
            greedy = out.sequences[0, T:]
            assert greedy.numel() == N_NEW, (name, i, greedy.numel())
            step_logits = torch.stack([s[0] for s in out.logits])  # [N_NEW, V], with the KV cache
            assert torch.equal(step_logits.argmax(-1), greedy), (name, i)
            # Independent cross-check: one forward over prompt + generated tokens, no cache.
            full = torch.cat([ids[0], greedy[:-1]])[None]
            flog = model(input_ids=full, use_cache=False, logits_to_keep=N_NEW).logits[0]  # [N_NEW, V]
            assert torch.equal(flog.argmax(-1), greedy), f"{name} prompt {i}: generate() disagrees with a full forward"
            info["cache_vs_full_maxdiff"] = max(info["cache_vs_full_maxdiff"], float((flog - step_logits).abs().max()),
                                                float((flog[0] - last).abs().max()))
            m = float(torch.minimum(margins(flog), margins(step_logits)).min())
            info["margins"].append(m)
            info["n_tokens"].append(T)
            info["decoded"].append(tok.decode(greedy.tolist(), skip_special_tokens=False))
            # float-order noise: the same model in float64
            if model64 is None:
                import copy

                model64 = copy.deepcopy(model).double()
            last64 = model64(input_ids=ids, logits_to_keep=1).logits[0, -1]
            info["f64_maxdiff"] = max(info["f64_maxdiff"], float((last.double() - last64).abs().max()))

            top = last.topk(TOP_K)
            tensors[f"prompt{i}.input_ids"] = ids[0].numpy().astype(np.int64)
            tensors[f"prompt{i}.greedy"] = greedy.numpy().astype(np.int64)
            tensors[f"prompt{i}.top_ids"] = top.indices.numpy().astype(np.int64)
            tensors[f"prompt{i}.top_logits"] = top.values.numpy().astype(np.float32)
            if i == 0 or size + 4 * V <= LAST_LOGITS_BUDGET:
                tensors[f"prompt{i}.last_logits"] = last.numpy().astype(np.float32)
                info["last_logits_prompts"].append(i)
                size += 4 * V
            C.log(f"  {name} prompt {i}: {T} tokens, min margin {m:.4g}: {info['decoded'][-1][:60]!r}")
    del model64
    return tensors, info


def gen_real(name: str, gguf_path: Path, out: Path) -> None:
    C.seed_everything(0)  # nothing is random; this sets one thread and deterministic algorithms
    route, types = dequant_route(gguf_path)
    tok, model = load(gguf_path)
    prompts, chat = prompts_for(name, tok)
    n_long = len(tok(prompts[-1])["input_ids"])
    assert n_long >= LONG_MIN_TOKENS, (name, n_long)

    tensors, info = reference_run(name, tok, model, prompts)
    margin = min(info["margins"])
    md = C.base_metadata(name, GENERATOR, TOLERANCE, prompts)
    # the same tolerance holds for the top-k logits (they are a part of last_logits)
    md["tolerance"] = json.dumps(dict(TOLERANCE, top_logits=TOLERANCE["last_logits"]), sort_keys=True)
    try:
        root = gguf_path.resolve().relative_to(C.REPO_ROOT)
    except ValueError:
        root = Path("models") / MODELS[name]
    md.update({
        "kind": "decoder",
        "model_dir": str(root),
        "max_new_tokens": str(N_NEW),
        "eos_stops": "false",
        "attn_implementation": "eager",
        "min_greedy_margin": "%.6g" % margin,
        "greedy_margins": json.dumps(["%.6g" % m for m in info["margins"]]),
        "greedy_decoded": json.dumps(info["decoded"], ensure_ascii=False),
        "chat": json.dumps(chat, ensure_ascii=False),
        "chat_prompt": "1",
        "top_k": str(TOP_K),
        "last_logits_prompts": json.dumps(info["last_logits_prompts"]),
        "f64_last_logits_maxdiff": "%.3g" % info["f64_maxdiff"],
        "cache_vs_full_maxdiff": "%.3g" % info["cache_vs_full_maxdiff"],
        "dequant": json.dumps(route, sort_keys=True),
        "tensor_types": json.dumps(types, sort_keys=True),
        "vocab_size": str(model.config.vocab_size),
        "add_bos": json.dumps(bool(tensors["prompt0.input_ids"][0] == tok.bos_token_id)
                              if tok.bos_token_id is not None else False),
    })
    path = out / "ref" / f"{name}.safetensors"
    C.write_safetensors(path, tensors, md)
    C.log(f"  {name}: wrote {path} ({path.stat().st_size} bytes); prompts {info['n_tokens']} tokens, "
          f"min greedy margin {margin:.4g}, f32 vs f64 last logits {info['f64_maxdiff']:.3g}, "
          f"cache vs full {info['cache_vs_full_maxdiff']:.3g}")


def main() -> None:
    p = C.arg_parser(__doc__.splitlines()[0])
    p.add_argument("--models-dir", default=str(C.REPO_ROOT / "models"),
                   help="where scripts/fetch_models.py put the models (default: models/)")
    args = p.parse_args()
    out = Path(args.out)
    for name, rel in MODELS.items():
        if not C.selected(name, args.only):
            continue
        path = Path(args.models_dir) / rel
        if not path.exists():
            raise SystemExit(f"gen_real_decoders: {path} not found (run scripts/fetch_models.py)")
        gen_real(name, path, out)


if __name__ == "__main__":
    main()
