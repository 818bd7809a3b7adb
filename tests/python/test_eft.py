#!/usr/bin/env python3
"""The Python package (python/eft) over the built libeft.so, checked against the reference
fixtures of tests/fixtures/ref (sentence-transformers embeddings, transformers greedy tokens), not
against eft itself. Run by ctest with EFT_LIBRARY and PYTHONPATH set; standard library only."""
import json
import math
import os
import struct
import sys
import unittest

SRC = os.environ.get("EFT_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "python"))
import eft  # noqa: E402


def read_ref(name):
    with open(os.path.join(SRC, "tests", "fixtures", "ref", name + ".safetensors"), "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    meta = hdr.pop("__metadata__")

    def tensor(key):
        t = hdr[key]
        b, e = t["data_offsets"]
        fmt = {"F32": "f", "I64": "q"}[t["dtype"]]
        size = struct.calcsize(fmt)
        return list(struct.unpack("<%d%s" % ((e - b) // size, fmt), raw[8 + n + b:8 + n + e]))

    return meta, tensor, hdr


def model_dir(name):
    return os.path.join(SRC, "tests", "fixtures", "models", name)


def max_abs(a, b):
    return max(abs(float(x) - float(y)) for x, y in zip(a, b))


class TestEmbeddings(unittest.TestCase):
    def test_embed_matches_sentence_transformers(self):
        for name in ("bert", "roberta", "mpnet"):
            meta, tensor, _ = read_ref(name)
            texts = json.loads(meta["texts"])
            tol = json.loads(meta["tolerance"])["embedding"]
            m = eft.AutoModel.from_pretrained(model_dir(name)).compile(num_cores=2, batch_size=4)
            got = m.embed(texts)
            for i, text in enumerate(texts):
                want = tensor("case%d.embedding" % i)
                self.assertEqual(len(got[i]), len(want))
                self.assertLessEqual(max_abs(got[i], want), tol, "%s case %d" % (name, i))
            one = m.embed(texts[0])
            self.assertLessEqual(max_abs(one, tensor("case0.embedding")), tol)
            q = m.embed(texts[:2], prompt_name="query")
            self.assertLessEqual(max_abs(q[1], tensor("case1.query.embedding")), tol)

    def test_generate_takes_tokenizer_output(self):
        meta, tensor, _ = read_ref("bert")
        tol = json.loads(meta["tolerance"])["embedding"]
        m = eft.QEFFAutoModel.from_pretrained(model_dir("bert")).compile(num_cores=1, seq_len=[32, 64])
        ids = [[int(t) for t in tensor("case%d.input_ids" % i)] for i in (0, 3)]
        # Right-padded with a mask, as a Hugging Face tokenizer returns a batch.
        T = max(len(r) for r in ids)
        batch = {"input_ids": [r + [0] * (T - len(r)) for r in ids],
                 "attention_mask": [[1] * len(r) + [0] * (T - len(r)) for r in ids]}
        out = m.generate(batch)["output"]
        self.assertLessEqual(max_abs(out[0], tensor("case0.embedding")), tol)
        self.assertLessEqual(max_abs(out[1], tensor("case3.embedding")), tol)

    def test_weight_dtype(self):
        # int8 and f16 weights (the precision pass) stay close to the reference; a bad name is refused.
        meta, tensor, _ = read_ref("bert")
        texts = json.loads(meta["texts"])
        for dtype, tol in (("f16", 1e-2), ("int8", 5e-2)):
            m = eft.AutoModel.from_pretrained(model_dir("bert")).compile(seq_len=64, weight_dtype=dtype)
            self.assertLessEqual(max_abs(m.embed(texts[:1])[0], tensor("case0.embedding")), tol)
            m.close()
        with self.assertRaises(eft.EftError):
            eft.AutoModel.from_pretrained(model_dir("bert")).compile(weight_dtype="int3")

    def test_tokenizer_ids(self):
        meta, tensor, _ = read_ref("bert")
        texts = json.loads(meta["texts"])
        tok = eft.Tokenizer(model_dir("bert"))
        for i, text in enumerate(texts):
            self.assertEqual(tok.encode(text), [int(t) for t in tensor("case%d.input_ids" % i)])

    def test_cross_encoder_scores(self):
        meta, tensor, _ = read_ref("bert-cls")
        pairs = json.loads(meta["texts"])
        tol = json.loads(meta["tolerance"])["logits"]
        m = eft.AutoModel.from_pretrained(model_dir("bert-cls")).compile()
        for i, (q, p) in enumerate(pairs):
            self.assertLessEqual(abs(m.score(q, [p])[0] - tensor("case%d.logits" % i)[0]), tol)

    def test_pooling_by_name_and_callable(self):
        meta, tensor, _ = read_ref("bert")
        texts = json.loads(meta["texts"])
        tol = json.loads(meta["tolerance"])["pooled"]

        def unit(v):
            n = math.sqrt(sum(x * x for x in v))
            return [x / n for x in v]

        # bert's folder normalises; the override keeps that, as sentence-transformers would.
        m = eft.AutoModel.from_pretrained(model_dir("bert"), pooling="cls").compile()
        self.assertLessEqual(max_abs(m.embed(texts[3]), unit(tensor("case3.pooled.cls"))), tol)
        # A callable gets the token embeddings and the mask, as QEfficient passes them.
        def first_token(hidden, mask):
            return hidden[0]
        m = eft.AutoModel.from_pretrained(model_dir("bert"), pooling=first_token).compile()
        self.assertLessEqual(max_abs(m.embed(texts[3]), tensor("case3.pooled.cls")), tol)
        self.assertLessEqual(max_abs(m.token_embeddings(texts[0])[0], tensor("case0.last_hidden_state")[:64]), tol)

    def test_errors_are_exceptions(self):
        with self.assertRaises(eft.EftError):
            eft.AutoModel.from_pretrained("/nonexistent/model").compile()
        with self.assertRaises(eft.EftError):
            eft.AutoModel.from_pretrained(model_dir("bert")).compile(seq_len=[0])
        with self.assertRaises(eft.EftError):
            eft.AutoModel.from_pretrained(model_dir("bert"), pooling="sum").compile()
        m = eft.AutoModel.from_pretrained(model_dir("bert")).compile(seq_len=[8])
        with self.assertRaises(eft.EftError) as cm:
            m.embed("a text that is certainly longer than eight tokens once it is tokenized")
        self.assertIn("EFT_ERR_LIMIT", str(cm.exception))
        self.assertEqual(len(m.embed("a text that is certainly longer than eight tokens", truncate="right")), m.dim)


class TestGeneration(unittest.TestCase):
    def test_greedy_matches_transformers(self):
        for name in ("llama", "qwen2", "gpt2"):
            meta, tensor, hdr = read_ref(name)
            n_prompts = sum(1 for k in hdr if k.endswith(".greedy"))
            lm = eft.AutoModelForCausalLM.from_pretrained(model_dir(name), continuous_batching=True)
            lm.compile(prefill_seq_len=8, ctx_len=128, full_batch_size=2, num_cores=2)
            prompts = [[int(t) for t in tensor("prompt%d.input_ids" % i)] for i in range(n_prompts)]
            out = lm.generate(prompts=prompts, generation_len=32, ignore_eos=True)
            for i in range(n_prompts):
                self.assertEqual(out.generated_ids[i], [int(t) for t in tensor("prompt%d.greedy" % i)],
                                 "%s prompt %d" % (name, i))
                self.assertEqual(out.finish_reasons[i], "length")
                self.assertEqual(out.generated_texts[i], lm.tokenizer.decode(out.generated_ids[i]))
            self.assertGreater(out.exec_info["decode_tokens_per_sec"], 0)

    def test_act_dtype(self):
        # int8 activations run (on int8 weights, where they apply) and give a generation of the
        # asked length; anything but f32 or int8 is refused before the model is opened.
        meta, tensor, hdr = read_ref("llama")
        prompt = [int(t) for t in tensor("prompt0.input_ids")]
        lm = eft.AutoModelForCausalLM.from_pretrained(model_dir("llama"))
        lm.compile(prefill_seq_len=8, ctx_len=128, weight_dtype="int8", act_dtype="int8", no_cache=True)
        out = lm.generate(prompts=[prompt], generation_len=8, ignore_eos=True)
        self.assertEqual(len(out.generated_ids[0]), 8)
        with self.assertRaises(eft.EftError):
            eft.AutoModelForCausalLM.from_pretrained(model_dir("llama")).compile(act_dtype="int4")

    def test_program_cache(self):
        # compile() keeps the converted weights as a program in cache_dir: the first compile writes
        # it, the second maps it; the greedy tokens stay transformers'.
        import tempfile
        meta, tensor, hdr = read_ref("llama")
        want = [int(t) for t in tensor("prompt0.greedy")]
        prompt = [int(t) for t in tensor("prompt0.input_ids")]
        with tempfile.TemporaryDirectory() as cache:
            for _ in range(2):
                lm = eft.AutoModelForCausalLM.from_pretrained(model_dir("llama"))
                lm.compile(prefill_seq_len=8, ctx_len=128, weight_dtype="f32", cache_dir=cache)
                out = lm.generate(prompts=[prompt], generation_len=32, ignore_eos=True)
                self.assertEqual(out.generated_ids[0], want)
                self.assertEqual(len([f for f in os.listdir(cache) if f.endswith(".eft")]), 1)
                lm.close()

    def test_bad_arguments(self):
        lm = eft.AutoModelForCausalLM.from_pretrained(model_dir("llama"))
        with self.assertRaises(eft.EftError):
            lm.compile(weight_dtype="int3")
        lm.compile(ctx_len=16, num_cores=1)
        with self.assertRaises(eft.EftError):
            lm.generate(prompts=[list(range(5, 40))])  # longer than ctx_len


if __name__ == "__main__":
    unittest.main(verbosity=2)
