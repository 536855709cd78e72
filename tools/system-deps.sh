#!/usr/bin/env bash
# Install the Debian packages named on the command line whose programs are missing.
set -euo pipefail
declare -A probe=([mosquitto]=/usr/sbin/mosquitto [mosquitto-clients]=mosquitto_pub [socat]=socat
                  [nodejs]=node [npm]=npm [chromium]=chromium [alsa-utils]=aplay [fonts-wqy-microhei]=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
                  [python3-pil]=/usr/lib/python3/dist-packages/PIL [python3-yaml]=/usr/lib/python3/dist-packages/yaml)
missing=()
for pkg in "$@"; do
  p=${probe[$pkg]:-$pkg}
  if [[ $p == /* ]]; then [[ -e $p ]] || missing+=("$pkg"); else command -v "$p" >/dev/null || missing+=("$pkg"); fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing Debian packages: ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then SUDO=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"
else
  echo "error: need root (or passwordless sudo) to run: apt-get install ${missing[*]}" >&2
  echo "       ask an administrator to install them, then run make again." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
