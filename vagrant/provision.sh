#!/usr/bin/env bash
# Provision a Debian machine and run pybpftrace's suite: what the Vagrant VM runs (vm-test.sh),
# and what CI runs directly on its own machine too (.ci/run), so it cannot rot. It installs only
# what the README's setup installs: `make test` does the setup (scripts/setup.sh), builds the
# version matrix, then runs the tests (in the VM's box all of that is already there).
#   vagrant/provision.sh [CHECKOUT [PYTEST_ARGS...]]   (as root; CHECKOUT defaults to this
#                                                       script's checkout; no PYTEST_ARGS: all)
set -euo pipefail

CHECKOUT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
shift || true

if [ "$(id -u)" -ne 0 ]; then
    echo "provision: run as root (sudo $0)" >&2
    exit 1
fi
# shellcheck source=scripts/apt.sh
source "$CHECKOUT/scripts/apt.sh"
apt_install make
echo "provision: kernel $(uname -r); running make test in $CHECKOUT${*:+ ($*)}"
make -C "$CHECKOUT" test TESTS="$*"
