# Shared set-up for scripts/serve and scripts/test: a virtualenv with the project installed.
# Sourced, not run. Re-installs only when pyproject.toml changed since the last install.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${BACKCHANNEL_VENV:-$ROOT/.venv}"

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "Backchannel needs Python 3.11 or newer on PATH (or set PYTHON=/path/to/python3)." >&2
  return 1
}

ensure_venv() {  # ensure_venv [extras]
  local extras="${1:-}" spec="$ROOT" stamp marker
  [ -n "$extras" ] && spec="$ROOT[$extras]"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv in $VENV"
    "$(find_python)" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
  fi
  stamp="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  marker="$VENV/.backchannel-installed-${extras:-base}"
  if [ "$(cat "$marker" 2>/dev/null)" != "$stamp" ]; then
    echo "==> installing Backchannel${extras:+ with [$extras]} into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
    echo "$stamp" > "$marker"
  fi
}

ensure_chromium() {
  local chromium="${BACKCHANNEL_CHROMIUM:-/usr/bin/chromium}"
  [ -x "$chromium" ] && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Chromium for the browser tests (apt-get install chromium)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "!! Chromium not found at $chromium and cannot install it (not root): browser tests will be skipped." >&2
    echo "!! Install it with: sudo apt-get install chromium   (or set BACKCHANNEL_CHROMIUM)" >&2
  fi
}
