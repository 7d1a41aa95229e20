#!/usr/bin/env bash
# Ansible's ssh connection runs the OpenSSH client; the end-to-end tests over
# ssh need it: Debian's openssh-client. Installs it when missing; does nothing
# when it is already there.
set -euo pipefail
if command -v ssh >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends openssh-client
