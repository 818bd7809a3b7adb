#!/usr/bin/env python3
"""Peer measurements for `eft bench generate`: Hugging Face transformers on PyTorch (CPU, float32,
eager attention off: the default SDPA path, which is PyTorch's fastest on CPU), on the same model,
threads and shapes as eft.

Prints one JSON object per line: {"peer": "torch", "what": "prefill" | "decode", "batch", "tokens",
"tokens_per_s"} or {"peer", "what", "error"}. Prefill: one forward pass over `tokens` prompt tokens
(KV cache built). Decode: the median time of one step of `batch` sequences, each with a KV cache of
`tokens` positions, one new token each; tokens_per_s = batch / step time.

usage: peer_generate.py --model DIR|FILE.gguf --threads N --seconds S --prefill 512 --decode 1,8 --context 128
"""
import argparse
import json
import os
import statistics
import sys
import time


def emit(**kw):
    print(json.dumps(kw), flush=True)


def timed(fn, seconds, setup=None):
    if setup:
        setup()
    fn()  # warm-up
    reps, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(reps) < 3:
        if setup:
            setup()
        t0 = time.perf_counter()
        fn()
        reps.append(time.perf_counter() - t0)
        if len(reps) >= 1024:
            break
    return statistics.median(reps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", default="1,8")
    ap.add_argument("--context", type=int, default=128)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings
    warnings.filterwarnings("ignore")
    batches = [int(x) for x in a.decode.split(",") if x]
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except Exception as e:  # noqa: BLE001 - any import failure means the peer is absent
        emit(peer="torch", what="all", error="not importable: %s" % e)
        return
    torch.set_num_threads(a.threads)
    kw = {"dtype": torch.float32}
    if a.model.endswith(".gguf"):
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(a.model) or ".",
                                                     gguf_file=os.path.basename(a.model), **kw)
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model, **kw)
    model.eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)

    with torch.inference_mode():
        ids = torch.randint(0, vocab, (1, a.prefill), generator=g)
        sec = timed(lambda: model(input_ids=ids, use_cache=True), a.seconds)
        emit(peer="torch", what="prefill", batch=1, tokens=a.prefill, tokens_per_s=a.prefill / sec)

        for b in batches:
            ctx = torch.randint(0, vocab, (b, a.context), generator=g)
            state = {}

            def setup():
                out = model(input_ids=ctx, use_cache=True)
                state["past"] = out.past_key_values
                state["next"] = out.logits[:, -1:].argmax(-1)

            def step():
                model(input_ids=state["next"], past_key_values=state["past"], use_cache=True)

            # Each repetition decodes one token on a fresh cache of `context` positions (the
            # cache object grows in place, so it is rebuilt outside the timed region).
            sec = timed(step, a.seconds / 2, setup=setup)
            emit(peer="torch", what="decode", batch=b, tokens=a.context, tokens_per_s=b / sec)


if __name__ == "__main__":
    sys.exit(main())
