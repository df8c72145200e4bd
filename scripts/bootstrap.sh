# Sourced by ./run-daemon and ./run-tests: a virtualenv in .venv with ecmta installed.
# Creates it on first use (Debian/Ubuntu: installs python3-venv when missing and root).
set -euo pipefail
ECMTA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${ECMTA_VENV:-$ECMTA_ROOT/.venv}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

apt_install() {  # apt_install pkg... (only when apt-get exists)
  command -v apt-get >/dev/null 2>&1 || { echo "please install: $*" >&2; return 1; }
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@" >/dev/null
}

ensure_venv() {  # ensure_venv [extras]
  local extras=${1:-}
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; }
  fi
  local stamp="$VENV/.ecmta-installed$extras"
  if [ ! -f "$stamp" ] || [ "$ECMTA_ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "$ECMTA_ROOT$extras"
    touch "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}
