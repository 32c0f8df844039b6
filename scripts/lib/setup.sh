# Shared by scripts/demo and scripts/test: find or install what a fresh machine lacks.
# Sourced, not run. Installs with apt-get when running as root; otherwise says what to
# install and exits 1.

PG_MAJOR="${PG_MAJOR:-15}"

find_pg_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir="$(pg_config --bindir 2>/dev/null || true)"
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
      echo "$dir"; return 0
    fi
  fi
  for dir in /usr/lib/postgresql/*/bin; do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
      echo "$dir"; return 0
    fi
  done
  return 1
}

# the major version of the server found (Debian layout), else PG_MAJOR
pg_major() {
  local bindir
  bindir="$(find_pg_bindir)" || { echo "$PG_MAJOR"; return; }
  if [[ "$bindir" =~ ^/usr/lib/postgresql/([0-9]+)/bin$ ]]; then
    echo "${BASH_REMATCH[1]}"
  else
    echo "$PG_MAJOR"
  fi
}

# ensure_installed WHO CHECK-FUNCTION PACKAGE...: run CHECK; if it fails, apt-get the
# packages as root, or explain and exit 1.
ensure_installed() {
  local who="$1" check="$2"; shift 2
  "$check" && return 0
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "$who: installing $* with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends "$@" >&2
    "$check" && return 0
    echo "$who: $* still missing after apt-get install" >&2
    exit 1
  fi
  cat >&2 <<MSG
$who needs: $*
Install them, for example on Debian or Ubuntu:

    sudo apt-get install $*

then run $who again.
MSG
  exit 1
}

ensure_uv() {
  if ! python3 -m uv --version >/dev/null 2>&1; then
    echo "installing uv with pip" >&2
    python3 -m pip install --quiet uv \
      || python3 -m pip install --quiet --user --break-system-packages uv
  fi
}
