#!/bin/sh
# Create tools/ref/.venv with the pinned reference stack (tools/ref/requirements.txt).
# Idempotent: does nothing, silently, when the venv already matches requirements.txt.
#   PYTHON=python3.11 tools/ref/setup-venv.sh
#   EFT_REF_PIP_ARGS="..." tools/ref/setup-venv.sh   (extra pip arguments)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

echo "setup-venv: installing $req into $venv (this downloads torch; it can take a while)" >&2
"${PYTHON:-python3}" -m venv "$venv"
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install -q --disable-pip-version-check ${EFT_REF_PIP_ARGS:-} -r "$req"
echo "$want" > "$stamp"
