#!/usr/bin/env python3
"""Peer measurements for `eft bench embed`: sentence-transformers on PyTorch, and the same
transformer exported to ONNX and run by ONNX Runtime, on the texts, lengths and threads eft used.

Prints one JSON object per line: {"peer", "batch", "tokens", "sentences_per_s"} or, when a peer
cannot run, {"peer", "batch", "tokens", "error"}. Each figure is the median repetition of the whole
path (tokenization, forward pass, pooling, normalisation), as eft measures itself.

usage: peer_embed.py --model DIR --texts FILE --shapes 32x128,1x16 --threads N --seconds S
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time


def emit(**kw):
    print(json.dumps(kw), flush=True)


def timed(fn, seconds):
    fn()  # warm-up
    reps, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(reps) < 3:
        t0 = time.perf_counter()
        fn()
        reps.append(time.perf_counter() - t0)
        if len(reps) >= 4096:
            break
    return statistics.median(reps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--shapes", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    texts = open(a.texts, encoding="utf-8").read().split("\n")
    shapes = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import warnings
    warnings.filterwarnings("ignore")

    try:
        import numpy as np
        import torch
        from sentence_transformers import SentenceTransformer
    except Exception as e:  # noqa: BLE001 - report any import failure as the peer's absence
        for b, t in shapes:
            emit(peer="torch", batch=b, tokens=t, error="not importable: %s" % e)
            emit(peer="onnxruntime", batch=b, tokens=t, error="not importable: %s" % e)
        return
    torch.set_num_threads(a.threads)
    st = SentenceTransformer(a.model, device="cpu")
    normalize = any(type(m).__name__ == "Normalize" for m in st)

    for b, t in shapes:
        st.max_seq_length = t
        batch = texts[:b]
        with torch.inference_mode():
            sec = timed(lambda: st.encode(batch, batch_size=b, convert_to_numpy=True), a.seconds)
        emit(peer="torch", batch=b, tokens=t, sentences_per_s=b / sec)

    try:
        import onnxruntime as ort
    except Exception as e:  # noqa: BLE001
        for b, t in shapes:
            emit(peer="onnxruntime", batch=b, tokens=t, error="not importable: %s" % e)
        return
    hf = st[0].auto_model.eval()
    tok = st.tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        sample = tok(["hello world"] * 2, return_tensors="pt", padding="max_length", max_length=16)
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
        class Wrapped(torch.nn.Module):
            # The exporter passes inputs positionally; the model wants them by name.
            def __init__(self):
                super().__init__()
                self.hf = hf

            def forward(self, *args):
                return self.hf(**dict(zip(names, args))).last_hidden_state

        try:
            with torch.inference_mode():
                torch.onnx.export(Wrapped(), tuple(sample[n] for n in names), path, input_names=names,
                                  output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                                  dynamic_axes={n: {0: "b", 1: "t"} for n in names + ["last_hidden_state"]})
        except Exception as e:  # noqa: BLE001
            for b, t in shapes:
                emit(peer="onnxruntime", batch=b, tokens=t, error="export failed: %s" % e)
            return
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for b, t in shapes:
            batch = texts[:b]

            def run():
                enc = tok(batch, return_tensors="np", padding=True, truncation=True, max_length=t)
                h = sess.run(None, {n: enc[n].astype(np.int64) for n in names})[0]
                m = enc["attention_mask"][..., None].astype(np.float32)
                v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)  # mean pooling, as the bench models use
                if normalize:
                    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
                return v

            emit(peer="onnxruntime", batch=b, tokens=t, sentences_per_s=b / timed(run, a.seconds))


if __name__ == "__main__":
    sys.exit(main())
