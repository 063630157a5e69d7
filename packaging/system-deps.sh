#!/usr/bin/env bash
# System libraries Qt needs to draw windows (also offscreen) and the compilers llama-cpp-python
# is built with. Installs only what is missing, and only where apt-get is available.
set -euo pipefail
needed=(libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 fonts-dejavu-core
        build-essential cmake)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${needed[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "Installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "Hearth needs these system packages: ${missing[*]} (install them with your package manager)" >&2
  fi
fi
