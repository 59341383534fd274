# Shared set-up for the scripts: a project virtualenv with the package and test extras.
# Idempotent: reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

step() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

ensure_venv() {  # [extras, default "test"; e.g. "test,bench"]
  local extras="${1:-test}"
  if [ ! -x "$PY" ]; then
    step "creating the virtualenv in .venv"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-${extras//,/-}"
  if [ ! -f "$stamp" ]; then
    step "installing colonies-operator and its $extras dependencies into .venv"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e "$ROOT[$extras]"
    rm -f "$VENV"/.installed-*-"${extras//,/-}"
    touch "$stamp"
  fi
}
