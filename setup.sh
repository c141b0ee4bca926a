#!/usr/bin/env bash
# Set up this checkout on Debian 12: the Debian packages the build steps and tests
# run, and a Python virtual environment in .venv with buildgraph installed editable.
# Idempotent: a second run checks and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")"

# Tools the steps, tests and benchmarks run. Keep in step with buildgraph/tools.py.
PACKAGES=(
  git python3 python3-venv ninja-build
  # build steps
  golang-go squashfs-tools xz-utils grub-common mtools dosfstools xorriso zstd e2fsprogs gdisk
  qemu-utils tar gzip bzip2 sbsigntool faketime
  # tests: independent readers, qemu boots, a registry and a second OCI client
  cpio qemu-system-x86 qemu-system-arm ovmf qemu-efi-aarch64 docker-registry skopeo
  apache2-utils openssl binutils ipxe-qemu strace
  # tests: the factory's web UI in a real browser
  chromium chromium-driver
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.buildgraph-installed"
want="$(cat pyproject.toml setup.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing buildgraph and its Python dependencies into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  # compat: a plain path entry. The default editable finder costs every doit run
  # about 25 ms of start-up, a tenth of a no-op build's budget.
  .venv/bin/python -m pip install -q --config-settings editable_mode=compat -e '.[test]'
  echo "$want" > "$stamp"
fi
