#!/usr/bin/env bash
# Provision a Debian machine and run pybpftrace's whole suite: what the Vagrant VM runs, and
# what CI runs directly (.ci/run), so it cannot rot. It installs only what the README's setup
# installs: `make test` does the setup (scripts/setup.sh), builds the version matrix, then
# runs the tests.
#   vagrant/provision.sh [CHECKOUT]     (as root; CHECKOUT defaults to this script's checkout)
set -euo pipefail

CHECKOUT=${1:-$(cd "$(dirname "$0")/.." && pwd)}

if [ "$(id -u)" -ne 0 ]; then
    echo "provision: run as root (sudo $0)" >&2
    exit 1
fi
# shellcheck source=scripts/apt.sh
source "$CHECKOUT/scripts/apt.sh"
apt_install make
echo "provision: kernel $(uname -r); running make test in $CHECKOUT"
make -C "$CHECKOUT" test
