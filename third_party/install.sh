#!/usr/bin/env bash
# Installs the Debian packages in third_party/packages.txt that are missing.
# As root: apt-get installs them. Otherwise: prints the exact command and fails.
# Optional ones (packages-optional.txt): installed as root when possible; a
# failure, or not being root, only prints a note.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The packages of a list file that are not installed.
missing_of() {
  local p
  grep -v '^\s*#' "$1" | sed '/^\s*$/d' | while read -r p; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"
}

mapfile -t missing < <(missing_of "$here/packages.txt")
mapfile -t optional < <(missing_of "$here/packages-optional.txt")
if [ ${#optional[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "aimc: installing optional Debian packages: ${optional[*]}"
    apt_install "${optional[@]}" >/dev/null 2>&1 || echo "aimc: note: could not install ${optional[*]} (optional; going on)"
  else
    echo "aimc: note: optional Debian packages missing (plots): sudo apt-get install -y ${optional[*]}" >&2
  fi
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "aimc: installing missing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
else
  echo "aimc: missing Debian packages. Run:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
