#!/usr/bin/env bash
# setup.sh [--test] — installs what eft needs and is missing, quietly and idempotently:
#   Debian packages through apt-get (only those not yet installed),
#   a project-local Python virtual environment (.venv) for the fetch step's pip,
#   the real models (scripts/fetch_models.py) into models/.
# --test adds what the test suite needs on top (clang + its runtimes for fuzzing, OpenBLAS for the
# kernel bench's peer, and the official openai client for the server's client test).
set -euo pipefail
cd "$(dirname "$0")/.."

want=(gcc make cmake pkg-config libjansson-dev libpcre2-dev libutf8proc-dev libmicrohttpd-dev)
if [ "${1:-}" = "--test" ]; then
  want+=(clang libclang-rt-14-dev libopenblas-dev)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The fetch step needs Python with venv and pip; any python3 on PATH that has them will do.
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing+=(python3 python3-venv python3-pip)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating the project's Python environment in .venv" >&2
  python3 -m venv .venv
fi

# Pinned Python tooling of the tests: the openai client talks to `eft serve` in test_serve_openai.sh.
if [ "${1:-}" = "--test" ] && ! .venv/bin/python -c 'import openai' 2>/dev/null; then
  echo "setup: installing openai==3.51.0 into .venv (for the server's client test)" >&2
  .venv/bin/python -m pip install -q openai==3.51.0 || echo "setup: openai not installable; its test will skip" >&2
fi

.venv/bin/python scripts/fetch_models.py
