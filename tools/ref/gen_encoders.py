#!/usr/bin/env python3
"""Tiny random encoder models (sentence-transformers folders) and their reference outputs.

Makes tests/fixtures/models/{bert,roberta,xlm-roberta,mpnet,bert-cls}/ and
tests/fixtures/ref/{same}.safetensors. See tools/ref/README.md for the format.
"""

from __future__ import annotations

import common as C  # sets the determinism environment first

import json
from pathlib import Path

import numpy as np
import torch

GENERATOR = "tools/ref/gen_encoders.py"
MAX_SEQ_LENGTH = 64
PROMPTS = {"query": "query: ", "document": "passage: "}
TOLERANCE = {"hidden": 1e-4, "pooled": 1e-4, "embedding": 1e-4}
POOLING_MODES = ["cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"]
# sentence-transformers' legacy 1_Pooling/config.json keys, in its concatenation order
LEGACY_POOL_KEYS = [
    ("cls", "pooling_mode_cls_token"),
    ("max", "pooling_mode_max_tokens"),
    ("mean", "pooling_mode_mean_tokens"),
    ("mean_sqrt_len_tokens", "pooling_mode_mean_sqrt_len_tokens"),
    ("weightedmean", "pooling_mode_weightedmean_tokens"),
    ("lasttoken", "pooling_mode_lasttoken"),
]

LONG_TEXT = (
    "Tokenizers split text into pieces and the engine turns the pieces into vectors; the quick "
    "brown fox jumps over the lazy dog while the cat sat on the mat, the weather today is sunny "
    "with a light breeze, and the library opens at nine in the morning and closes at six in the "
    "evening, so bring the report and a pen to the meeting on Monday at 10:30 in room 4B."
)
BASE_TEXTS = [
    "Hello, world!",
    "",
    "Café au lait, s'il vous plaît — 東京で会いましょう 🙂 naïve Zürich",
    "what is the capital of France?",
]
PAIRS = [
    ["what is the capital of France?", "Paris is the capital of France."],
    ["how do I bake bread?", "The weather today is sunny with a light breeze from the west."],
    ["", "An empty query still gets a score."],
    ["Café 東京 🙂?", "Emoji are text too 🙂 and so are accents like naïve and façade."],
]

COMMON_CFG = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                  hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  initializer_range=0.02)

# name -> description. pooling: tuple of sentence-transformers mode names, in the order they are
# concatenated; st_format "legacy" writes the v2-v5 files (pooling_mode_* booleans,
# max_seq_length in sentence_bert_config.json) that most published models have; "v6" lets
# sentence-transformers 6 save the folder itself (pooling_mode string/list, new sentence_bert_config).
ENCODERS = {
    "bert": dict(arch="bert", seed=1001, pooling=("mean",), normalize=True, st_format="legacy"),
    "roberta": dict(arch="roberta", seed=1002, pooling=("cls",), normalize=False, st_format="legacy"),
    "xlm-roberta": dict(arch="xlm-roberta", seed=1003, pooling=("max", "lasttoken"), normalize=False,
                        st_format="legacy"),
    "mpnet": dict(arch="mpnet", seed=1004, pooling=("weightedmean", "mean_sqrt_len_tokens"),
                  normalize=True, st_format="v6"),
}


def build_tokenizer(arch: str):
    if arch in ("bert", "bert-cls"):
        post = "template" if arch == "bert" else "bert"
        tok = C.wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "[UNK]", "[CLS]", "[SEP]",
                                    post=post, lowercase=True)
        special = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                       mask_token="[MASK]")
        names = ["input_ids", "token_type_ids", "attention_mask"]
    elif arch == "mpnet":
        tok = C.wordpiece_tokenizer(["<s>", "<pad>", "</s>", "[UNK]"], "[UNK]", "<s>", "</s>", post="roberta",
                                    lowercase=True, extra_specials=["<mask>"])
        special = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="[UNK]", cls_token="<s>",
                       sep_token="</s>", mask_token="<mask>")
        names = ["input_ids", "attention_mask"]
    elif arch == "roberta":
        tok = C.bytelevel_bpe_tokenizer("roberta", ["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"])
        special = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", cls_token="<s>",
                       sep_token="</s>", mask_token="<mask>")
        names = ["input_ids", "attention_mask"]
    elif arch == "xlm-roberta":
        tok = C.unigram_tokenizer(["<s>", "<pad>", "</s>", "<unk>"], "<unk>", ["<mask>"])
        special = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", cls_token="<s>",
                       sep_token="</s>", mask_token="<mask>")
        names = ["input_ids", "attention_mask"]
    else:
        raise ValueError(arch)
    return tok, special, names


def build_config(arch: str, tok):
    import transformers as T

    vocab = tok.get_vocab_size(with_added_tokens=True)
    tid = tok.token_to_id
    if arch == "bert":
        return T.BertConfig(vocab_size=vocab, max_position_embeddings=128, type_vocab_size=2,
                            pad_token_id=tid("[PAD]"), layer_norm_eps=1e-12, **COMMON_CFG)
    if arch == "bert-cls":
        return T.BertConfig(vocab_size=vocab, max_position_embeddings=128, type_vocab_size=2,
                            pad_token_id=tid("[PAD]"), layer_norm_eps=1e-12, num_labels=1,
                            architectures=["BertForSequenceClassification"], **COMMON_CFG)
    if arch in ("roberta", "xlm-roberta"):
        cls = T.RobertaConfig if arch == "roberta" else T.XLMRobertaConfig
        # position ids start at pad_token_id + 1 (= 2), so 130 rows serve 128 tokens (like 514 for 512)
        return cls(vocab_size=vocab, max_position_embeddings=MAX_SEQ_LENGTH + 66, type_vocab_size=1,
                   pad_token_id=tid("<pad>"), bos_token_id=tid("<s>"), eos_token_id=tid("</s>"),
                   layer_norm_eps=1e-5, **COMMON_CFG)
    if arch == "mpnet":
        return T.MPNetConfig(vocab_size=vocab, max_position_embeddings=MAX_SEQ_LENGTH + 66,
                             relative_attention_num_buckets=32, pad_token_id=tid("<pad>"),
                             bos_token_id=tid("<s>"), eos_token_id=tid("</s>"), layer_norm_eps=1e-5,
                             **COMMON_CFG)
    raise ValueError(arch)


def build_model(arch: str, config, seed: int):
    import transformers as T

    C.seed_everything(seed)
    config._attn_implementation = "eager"
    cls = {"bert": T.BertModel, "bert-cls": T.BertForSequenceClassification, "roberta": T.RobertaModel,
           "xlm-roberta": T.XLMRobertaModel, "mpnet": T.MPNetModel}[arch]
    model = cls(config)
    C.perturb_constant_params(model, seed + 1)
    model.eval()
    return model


def near_max_text(hf_tok) -> str:
    """LONG_TEXT cut at a word boundary so it has between MAX-6 and MAX tokens (with specials)."""
    words = LONG_TEXT.split(" ")
    for n in range(len(words), 0, -1):
        t = " ".join(words[:n])
        if len(hf_tok(t)["input_ids"]) <= MAX_SEQ_LENGTH:
            assert len(hf_tok(t)["input_ids"]) >= MAX_SEQ_LENGTH - 6, "LONG_TEXT too coarse"
            return t
    raise AssertionError("LONG_TEXT does not fit")


def write_st_legacy(folder: Path, pooling, normalize: bool) -> None:
    import sentence_transformers
    import transformers

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        # Published folders have no 2_Normalize directory at all (git does not keep an empty one).
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    C.dump_json(folder / "modules.json", modules)
    C.dump_json(folder / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    pool = {"word_embedding_dimension": 64}
    for mode, key in LEGACY_POOL_KEYS:
        pool[key] = mode in pooling
    pool["include_prompt"] = True
    C.dump_json(folder / "1_Pooling" / "config.json", pool)
    C.dump_json(folder / "config_sentence_transformers.json", {
        "__version__": {"sentence_transformers": sentence_transformers.__version__,
                        "transformers": transformers.__version__, "pytorch": torch.__version__},
        "prompts": PROMPTS,
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })


def write_st_v6(folder: Path, pooling, normalize: bool, special) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    tr = Transformer(str(folder), max_seq_length=MAX_SEQ_LENGTH,
                     model_kwargs={"attn_implementation": "eager"})
    mods = [tr, Pooling(64, pooling_mode=tuple(pooling) if len(pooling) > 1 else pooling[0])]
    if normalize:
        mods.append(Normalize())
    st = SentenceTransformer(modules=mods, device="cpu", prompts=dict(PROMPTS))
    st.save(str(folder), create_model_card=False)
    # loading-time bookkeeping that the re-saved tokenizer_config.json picks up; not part of a model
    tc = folder / "tokenizer_config.json"
    tcfg = json.loads(tc.read_text(encoding="utf-8"))
    for k in ("is_local", "local_files_only"):
        tcfg.pop(k, None)
    tc.write_text(json.dumps(tcfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    # transformers 5 does not write special_tokens_map.json; keep ours
    C.dump_json(folder / "special_tokens_map.json", {k: v for k, v in sorted(special.items())})


def load_st(folder: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", model_kwargs={"attn_implementation": "eager"})


def gen_encoder(name: str, spec: dict, out: Path) -> None:
    from sentence_transformers.models import Normalize, Pooling
    from transformers import AutoModel, AutoTokenizer

    arch = spec["arch"]
    folder = C.fresh_dir(out / "models" / name)
    tok, special, input_names = build_tokenizer(arch)
    config = build_config(arch, tok)
    model = build_model(arch, config, spec["seed"])
    model.save_pretrained(str(folder))
    C.save_hf_tokenizer(tok, folder, special=special, model_max_length=MAX_SEQ_LENGTH,
                        model_input_names=input_names)
    if spec["st_format"] == "legacy":
        write_st_legacy(folder, spec["pooling"], spec["normalize"])
    else:
        write_st_v6(folder, spec["pooling"], spec["normalize"], special)

    # ---- reload everything from disk: the references describe the folder, not the object ----
    hf_tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    st = load_st(folder)
    pool_mod = [m for m in st if isinstance(m, Pooling)]
    assert len(pool_mod) == 1
    got_modes = pool_mod[0].pooling_mode
    got_modes = (got_modes,) if isinstance(got_modes, str) else tuple(got_modes)
    assert got_modes == tuple(spec["pooling"]), (name, got_modes)
    assert any(isinstance(m, Normalize) for m in st) == spec["normalize"], name
    assert st.max_seq_length == MAX_SEQ_LENGTH, (name, st.max_seq_length)
    assert st.prompts == PROMPTS, st.prompts

    texts = list(BASE_TEXTS) + [near_max_text(hf_tok)]
    C.check_tokenizer_json(folder, texts, hf_tok)
    C.check_tokenizer_json(folder, [PROMPTS["query"] + t for t in texts], hf_tok)

    tensors: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for i, text in enumerate(texts):
            enc = hf_tok(text, return_tensors="pt")
            ids = enc["input_ids"][0]
            assert len(ids) <= MAX_SEQ_LENGTH
            hidden = model(**enc).last_hidden_state[0]
            tensors[f"case{i}.input_ids"] = ids.numpy().astype(np.int64)
            tensors[f"case{i}.last_hidden_state"] = hidden.numpy().astype(np.float32)
            mask = torch.ones(1, len(ids), dtype=torch.int64)
            for mode in POOLING_MODES:
                feats = Pooling(64, pooling_mode=mode)({"token_embeddings": hidden[None], "attention_mask": mask})
                tensors[f"case{i}.pooled.{mode}"] = feats["sentence_embedding"][0].numpy().astype(np.float32)
            # the folder's own pipeline (its pooling + Normalize)
            st_ids = st.preprocess([text])["input_ids"][0]
            assert st_ids.tolist() == ids.tolist(), (name, text)
            emb = st.encode([text], batch_size=1, convert_to_numpy=True)[0].astype(np.float32)
            mine = torch.cat([torch.from_numpy(tensors[f"case{i}.pooled.{m}"]) for m in spec["pooling"]])
            if spec["normalize"]:
                mine = torch.nn.functional.normalize(mine, p=2, dim=0)
            assert np.allclose(mine.numpy(), emb, atol=1e-5), (name, i)
            tensors[f"case{i}.embedding"] = emb
            # the same text with the "query" prompt (include_prompt=true: prompt tokens are pooled)
            q_ids = hf_tok(PROMPTS["query"] + text)["input_ids"]
            tensors[f"case{i}.query.input_ids"] = np.asarray(q_ids, dtype=np.int64)
            tensors[f"case{i}.query.embedding"] = st.encode(
                [text], prompt_name="query", batch_size=1, convert_to_numpy=True)[0].astype(np.float32)

        batch = hf_tok(texts, padding=True, return_tensors="pt")
        assert hf_tok.padding_side == "right"
        hidden = model(**batch).last_hidden_state
        tensors["batch.input_ids"] = batch["input_ids"].numpy().astype(np.int64)
        tensors["batch.attention_mask"] = batch["attention_mask"].numpy().astype(np.int64)
        tensors["batch.last_hidden_state"] = hidden.numpy().astype(np.float32)
        # padded rows agree with the single-sequence runs at the attended positions
        for i in range(len(texts)):
            n = int(batch["attention_mask"][i].sum())
            assert np.allclose(hidden[i, :n].numpy(), tensors[f"case{i}.last_hidden_state"], atol=1e-4)

    tok_tensors, tok_md = C.tokenize_cases(folder)
    tensors.update(tok_tensors)
    md = C.base_metadata(name, GENERATOR, TOLERANCE, texts)
    md.update(tok_md)
    md.update({
        "kind": "encoder",
        "model_dir": f"tests/fixtures/models/{name}",
        "pooling": json.dumps(list(spec["pooling"])),
        "normalize": "true" if spec["normalize"] else "false",
        "max_seq_length": str(MAX_SEQ_LENGTH),
        "prompts": json.dumps(PROMPTS, ensure_ascii=False, sort_keys=True),
        "st_format": spec["st_format"],
    })
    C.write_safetensors(out / "ref" / f"{name}.safetensors", tensors, md)
    C.log(f"  {name}: vocab {config.vocab_size}, {len(texts)} texts, pooling {spec['pooling']}")


def gen_cross_encoder(out: Path, name: str = "bert-cls", seed: int = 1005) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = C.fresh_dir(out / "models" / name)
    tok, special, input_names = build_tokenizer("bert-cls")
    config = build_config("bert-cls", tok)
    model = build_model("bert-cls", config, seed)
    model.save_pretrained(str(folder))
    C.save_hf_tokenizer(tok, folder, special=special, model_max_length=MAX_SEQ_LENGTH,
                        model_input_names=input_names)

    hf_tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), attn_implementation="eager").eval()
    assert model.config.num_labels == 1
    C.check_tokenizer_json(folder, PAIRS, hf_tok, pairs=True)
    tensors: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for i, (q, p) in enumerate(PAIRS):
            enc = hf_tok(q, p, return_tensors="pt", return_token_type_ids=True)
            logits = model(**enc).logits[0]
            tensors[f"case{i}.input_ids"] = enc["input_ids"][0].numpy().astype(np.int64)
            tensors[f"case{i}.token_type_ids"] = enc["token_type_ids"][0].numpy().astype(np.int64)
            tensors[f"case{i}.logits"] = logits.numpy().astype(np.float32)
            assert int(enc["token_type_ids"][0].max()) == 1
    tok_tensors, tok_md = C.tokenize_cases(folder)
    tensors.update(tok_tensors)
    md = C.base_metadata(name, GENERATOR, {"logits": 1e-4}, PAIRS)
    md.update(tok_md)
    md.update({"kind": "cross-encoder", "model_dir": f"tests/fixtures/models/{name}",
               "max_seq_length": str(MAX_SEQ_LENGTH)})
    C.write_safetensors(out / "ref" / f"{name}.safetensors", tensors, md)
    C.log(f"  {name}: vocab {config.vocab_size}, {len(PAIRS)} pairs")


def main() -> None:
    args = C.arg_parser(__doc__).parse_args()
    out = Path(args.out)
    for name, spec in ENCODERS.items():
        if C.selected(name, args.only):
            gen_encoder(name, spec, out)
    if C.selected("bert-cls", args.only):
        gen_cross_encoder(out)


if __name__ == "__main__":
    main()
