#!/usr/bin/env bash
# Set up quicknets on a fresh Debian machine: the Fashion-MNIST package and a virtual environment
# in .venv with quicknets installed (editable). `scripts/setup.sh test` adds what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(dataset-fashion-mnist)
if [ "${1:-}" = test ]; then
    packages+=(chromium postgresql)  # the HTML report's browser test, the shared-study sweep test
fi
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
extra=""; [ "${1:-}" = test ] && extra="[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra}"
