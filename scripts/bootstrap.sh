#!/usr/bin/env bash
# Install everything Pantau needs on a fresh Debian/Ubuntu machine: the Debian packages for the
# broker and the time-series store, a Python >= 3.11, and a virtualenv in .venv with Pantau in it.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

pick_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if have "$py" && "$py" -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

apt_packages=()
have mosquitto || apt_packages+=(mosquitto)
have mosquitto_pub || apt_packages+=(mosquitto-clients)
have influxd || apt_packages+=(influxdb)
# The board test drives Debian's Chromium (Playwright never downloads a browser here);
# bench/api_*.py loads the API with wrk.
have chromium || apt_packages+=(chromium)
have wrk || apt_packages+=(wrk)
PY="$(pick_python || true)"
if [ -z "$PY" ]; then
  # Debian 12 ships 3.11 as python3; older Ubuntu has python3.11 as a separate package.
  if apt-cache show python3.11-venv >/dev/null 2>&1; then apt_packages+=(python3.11 python3.11-venv python3.11-dev)
  else apt_packages+=(python3 python3-venv python3-dev); fi
fi
# pip builds the ingester's two C extensions (docs/adr/0034, 0039) with a C compiler, the C
# library's headers (only a recommendation of gcc, which --no-install-recommends skips) and
# Python's; without them the install still succeeds and the ingester runs its slower paths.
have gcc || apt_packages+=(gcc)
[ -e /usr/include/string.h ] || apt_packages+=(libc6-dev)
if [ -n "$PY" ] && ! "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
  apt_packages+=("$(basename "$PY")-dev")
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${apt_packages[*]}"
  $SUDO apt-get update -qq
  # policy-rc.d-free machines start the packaged services; Pantau starts its own on free ports.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi
PY="${PY:-$(pick_python)}"

stamp=".venv/.pantau-installed"
# pyproject.toml and the C extensions' sources: pip install -e builds the extensions in place,
# so a checkout that pulled changed C code must install again, or it keeps the old .so files
want="$( { cat pyproject.toml; find cloud -name '*.[ch]' | LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> creating .venv with $("$PY" --version) and installing Pantau"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # setuptools prints hundreds of lines of warnings (ext-modules is "experimental", the
  # board's static files look like a package to it): kept in a log, shown if pip fails
  if ! .venv/bin/python -m pip install -q -e '.[dev]' > .venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
