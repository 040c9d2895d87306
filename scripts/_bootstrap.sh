# Shared set-up for scripts/serve, scripts/test, scripts/check and scripts/bench: a virtualenv
# with the project installed. Sourced, not run. Installs again only when pyproject.toml changed
# since the last install or an extra is asked for that is not there yet; scripts share one .venv,
# so scripts/serve after scripts/test (or the other way round) adds what is missing and nothing else.

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
  echo "error: Backchannel needs Python 3.11 or newer on PATH (or set PYTHON=/path/to/python3)." >&2
  return 1
}

create_venv() {
  local python
  python="$(find_python)" || return 1
  echo "==> creating a virtualenv in $VENV ($("$python" --version 2>&1))"
  if ! "$python" -m venv "$VENV" || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$VENV"  # half-made: the next run starts again instead of tripping over it
    echo "error: could not create a virtualenv with $python (on Debian or Ubuntu: apt-get install python3-venv)" >&2
    return 1
  fi
}

ensure_venv() {  # ensure_venv [extra,extra…]
  local extras="${1:-}" spec="$ROOT" stamp name missing="" started=$SECONDS
  [ -n "$extras" ] && spec="$ROOT[$extras]"
  if [ ! -x "$VENV/bin/python" ]; then
    create_venv || return 1
  fi
  stamp="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  for name in base ${extras//,/ }; do
    [ "$(cat "$VENV/.backchannel-installed-$name" 2>/dev/null)" = "$stamp" ] || missing=1
  done
  [ -n "$missing" ] || return 0
  echo "==> installing Backchannel${extras:+ with [$extras]} and its dependencies into $VENV (a minute or two the first time)"
  # PYTHONWARNINGS: setuptools' editable build prints a boxed warning a newcomer cannot act on
  # (pip's own messages and any error still show).
  if ! PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"; then
    echo "error: installing Backchannel failed (pip's message is above); run the same command again once it is fixed" >&2
    return 1
  fi
  for name in base ${extras//,/ }; do
    echo "$stamp" > "$VENV/.backchannel-installed-$name"
  done
  echo "    installed in $((SECONDS - started)) s"
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

ensure_npm() {  # Node.js and npm, from Debian's packages when run as root and missing
  command -v npm >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Node.js and npm (apt-get install nodejs npm)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  command -v npm >/dev/null 2>&1
}

npm_ci() {  # npm_ci DIR WHAT: `npm ci` in DIR once per package-lock.json
  local dir="$ROOT/$1" what="$2" stamp
  stamp="$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
  [ "$(cat "$dir/node_modules/.backchannel-installed" 2>/dev/null)" = "$stamp" ] && return 0
  echo "==> installing $what (npm ci in $1)"
  if (cd "$dir" && npm ci --no-audit --no-fund --silent); then
    echo "$stamp" > "$dir/node_modules/.backchannel-installed"
  else
    echo "!! npm ci failed in $1: the tests that need $what fail until it works" >&2
  fi
}

ensure_node_packages() {  # axe-core for the accessibility checks; the JavaScript example bot's packages
  if ! ensure_npm; then
    echo "!! npm not found: the accessibility checks and the JavaScript bot's test are skipped. Install Node.js and npm." >&2
    return 0
  fi
  npm_ci tests/browser/axe "axe-core for the accessibility checks"
  npm_ci examples/pizzabot-js "the JavaScript example bot's packages (standardwebhooks)"
}
