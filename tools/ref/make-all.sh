#!/bin/sh
# Regenerate every reference fixture under tests/fixtures/ (models/, ref/, gguf/).
#
#   tools/ref/make-all.sh            regenerate in place
#   tools/ref/make-all.sh --check    generate twice into temporary folders; fail if the two runs
#                                    differ (non-determinism) or differ from tests/fixtures
#                                    (fixtures out of date)
#
# Python: ${EFT_REF_PYTHON:-tools/ref/.venv/bin/python}; the default venv is created on first use
# by tools/ref/setup-venv.sh. Example: EFT_REF_PYTHON=/tmp/refvenv/bin/python tools/ref/make-all.sh
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if [ -z "${EFT_REF_PYTHON:-}" ]; then
    tools/ref/setup-venv.sh
fi
py=${EFT_REF_PYTHON:-tools/ref/.venv/bin/python}
if ! [ -x "$py" ] && ! command -v "$py" >/dev/null 2>&1; then
    echo "make-all: no python at '$py'" >&2
    exit 1
fi

check=0
case "${1:-}" in
    --check) check=1 ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

generate() {  # $1 = output root
    echo "== encoders -> $1" >&2
    "$py" tools/ref/gen_encoders.py --out "$1"
    echo "== decoders -> $1" >&2
    "$py" tools/ref/gen_decoders.py --out "$1"
    echo "== gguf -> $1" >&2
    "$py" tools/ref/gen_gguf.py --out "$1"
    # A real model's reference, from the fetched (not committed) models/all-MiniLM-L6-v2; without
    # it, the committed reference is carried over unchanged so that this run does not drop it.
    if [ -f models/all-MiniLM-L6-v2/model.safetensors ]; then
        echo "== all-MiniLM-L6-v2 -> $1" >&2
        "$py" tools/ref/gen_minilm_ref.py --out "$1/ref/all-MiniLM-L6-v2.safetensors"
    elif [ -f tests/fixtures/ref/all-MiniLM-L6-v2.safetensors ]; then
        echo "== all-MiniLM-L6-v2: models/all-MiniLM-L6-v2 not fetched, keeping the committed reference" >&2
        cp tests/fixtures/ref/all-MiniLM-L6-v2.safetensors "$1/ref/"
    fi
    # Bulk embedding references (240 sentences, 40 queries) of the real encoders, one by one, each
    # kept as committed when its model is not fetched (all-mpnet-base-v2 is fetched on request).
    for name in all-MiniLM-L6-v2 all-mpnet-base-v2; do
        if [ -f "models/$name/model.safetensors" ]; then
            echo "== $name-bulk -> $1" >&2
            "$py" tools/ref/gen_encoder_bulk_ref.py --out "$1" --only "$name"
        elif [ -f "tests/fixtures/ref/$name-bulk.safetensors" ]; then
            echo "== $name-bulk: models/$name not fetched, keeping the committed reference" >&2
            cp "tests/fixtures/ref/$name-bulk.safetensors" "$1/ref/"
        fi
    done
    # The same for the two real quantised decoders (GGUF files fetched into models/), one by one.
    for pair in smollm2-135m-q4_1:SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf \
                gemma-3-270m-q4_k_m:gemma-3-270m-Q4_K_M/gemma-3-270m-q4_k_m.gguf; do
        name=${pair%%:*}
        if [ -f "models/${pair#*:}" ]; then
            echo "== $name -> $1" >&2
            "$py" tools/ref/gen_real_decoders.py --out "$1" --only "$name"
        elif [ -f "tests/fixtures/ref/$name.safetensors" ]; then
            echo "== $name: models/${pair#*:} not fetched, keeping the committed reference" >&2
            cp "tests/fixtures/ref/$name.safetensors" "$1/ref/"
        fi
    done
}

sums() {  # sha256 of every file under $1, paths relative to $1
    (cd "$1" && find models ref gguf -type f | LC_ALL=C sort | xargs sha256sum)
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eft-ref.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ "$check" = 1 ]; then
    generate "$tmp/a"
    generate "$tmp/b"
    sums "$tmp/a" > "$tmp/a.sum"
    sums "$tmp/b" > "$tmp/b.sum"
    status=0
    if ! diff -u "$tmp/a.sum" "$tmp/b.sum"; then
        echo "make-all: two runs differ: the generators are not deterministic" >&2
        status=1
    else
        echo "make-all: two runs are byte-identical" >&2
    fi
    sums tests/fixtures > "$tmp/committed.sum" 2>/dev/null || true
    if ! diff -u "$tmp/committed.sum" "$tmp/a.sum"; then
        echo "make-all: tests/fixtures differs from a fresh run (out of date, or other library builds)" >&2
        status=1
    else
        echo "make-all: tests/fixtures is up to date" >&2
    fi
    exit $status
fi

generate "$tmp/new"
mkdir -p tests/fixtures
for d in models ref gguf; do
    rm -rf "tests/fixtures/$d"
    mv "$tmp/new/$d" "tests/fixtures/$d"
done
# git does not keep permissions beyond +x; make the tree look the same for everyone
find tests/fixtures/models tests/fixtures/ref tests/fixtures/gguf -type f -exec chmod 644 {} +
find tests/fixtures/models tests/fixtures/ref tests/fixtures/gguf -type d -exec chmod 755 {} +
# These write straight into tests/fixtures/<theirs> (and their fuzz seeds); they read the models
# above, so they run after them.
echo "== chat templates -> tests/fixtures/chat" >&2
"$py" tools/ref/render_chat_templates.py
echo "== tokenizers -> tests/fixtures/tokenizers" >&2
"$py" tools/ref/make_tokenizer_fixtures.py
du -sh tests/fixtures >&2
