"""Reference outputs of a real published embedding model, sentence-transformers/all-MiniLM-L6-v2,
for the encoder test: input ids, embeddings for six sentences of different lengths, and the
transformer's hidden states for two of them. Unlike the tiny random fixtures, the model itself is
not committed (the project's fetch step puts it in models/all-MiniLM-L6-v2, which git ignores);
only this small reference file is.

    HF_HUB_OFFLINE=1 python tools/ref/gen_minilm_ref.py [--model models/all-MiniLM-L6-v2] \
        [--out tests/fixtures/ref/all-MiniLM-L6-v2.safetensors]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets the single-thread / offline environment first)
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

TEXTS = [
    "This is an example sentence.",
    "Each sentence is converted",
    "The quick brown fox jumps over the lazy dog near the riverbank.",
    "How do I reset my password?",
    "Sentence embeddings map text to a dense vector space of 384 dimensions, which can be used "
    "for tasks like clustering, semantic search and finding paraphrases across large collections.",
    "Café, naïve résumé — 東京 and emoji 🙂 mixed in.",
]
HIDDEN_CASES = (0, 3)  # short ones: the hidden states dominate the file size
TOLERANCE = {"embedding": 1e-5, "hidden": 1e-4}


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "ref" / "all-MiniLM-L6-v2.safetensors"))
    args = ap.parse_args()
    common.seed_everything(0)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(args.model, device="cpu")
    st.eval()
    tok = st.tokenizer
    tensors: dict[str, np.ndarray] = {}
    for i, text in enumerate(TEXTS):
        enc = tok(text, return_tensors="pt")
        ids = enc["input_ids"]
        tensors[f"case{i}.input_ids"] = ids[0].numpy().astype(np.int64)
        emb = st.encode(text, convert_to_numpy=True, normalize_embeddings=False)
        tensors[f"case{i}.embedding"] = emb.astype(np.float32)
        if i in HIDDEN_CASES:
            with torch.no_grad():
                out = st[0].auto_model(**enc)
            tensors[f"case{i}.last_hidden_state"] = out.last_hidden_state[0].numpy().astype(np.float32)
    md = common.base_metadata("all-MiniLM-L6-v2", "tools/ref/gen_minilm_ref.py", TOLERANCE, TEXTS)
    md["kind"] = "encoder"
    md["model_dir"] = "models/all-MiniLM-L6-v2"
    md["pooling"] = json.dumps(["mean"])
    md["normalize"] = "true"
    md["hidden_cases"] = json.dumps(list(HIDDEN_CASES))
    common.write_safetensors(Path(args.out), tensors, md)
    common.log(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
