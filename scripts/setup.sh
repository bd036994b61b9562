#!/usr/bin/env bash
# Set up a Debian machine to run and test pybpftrace: apt packages, kernel headers bcc can
# find, and a venv from the system Python (bcc lives in its site-packages). Idempotent: a
# second run changes nothing and says so.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
APT_PACKAGES=(
    python3 python3-venv python3-bpfcc   # the tracer's runtime: bcc is not on PyPI
    python3.11                           # the --with-dtrace CPython the tests and demo trace
    libpython3.11-dev gcc                # tests: an embedded interpreter, the event layout check
    python3.11-dev                       # tests: python3.11-config, to build the embedded one
    systemtap-sdt-dev                    # tests: <sys/sdt.h> to build probe fixtures
    perl                                 # tests: flamegraph.pl
)

say() { printf 'setup: %s\n' "$*"; }

# The VM's box preinstalls these (vagrant/build-box.sh): one list for both.
if [ "${1:-}" = "--list-packages" ]; then
    printf '%s\n' "${APT_PACKAGES[@]}"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    say "needs root to install packages and load BPF programs: run 'sudo make ${MAKE_TARGET:-setup}'" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    say "this setup is for Debian (apt-get not found)" >&2
    exit 1
fi

# shellcheck source=scripts/apt.sh
source scripts/apt.sh

# A make target may need more (make bench: the peers it measures pybpftrace against).
read -r -a EXTRA_PACKAGES <<<"${EXTRA_APT_PACKAGES:-}"
apt_install "${APT_PACKAGES[@]}" "${EXTRA_PACKAGES[@]}"

# bcc compiles BPF programs at run time against the running kernel's headers, found through
# /lib/modules/$(uname -r)/build.
RELEASE=$(uname -r)
MODULES=/lib/modules/$RELEASE
headers_ok() { [ -e "$MODULES/build/include/generated/autoconf.h" ] || [ -e /sys/kernel/kheaders.tar.xz ]; }
if headers_ok; then
    say "kernel headers for $RELEASE: present"
else
    if apt-cache show "linux-headers-$RELEASE" >/dev/null 2>&1; then
        apt_install "linux-headers-$RELEASE"
    fi
fi
if ! headers_ok; then
    # No package matches this kernel (a custom or cloud kernel): use Debian's generic
    # headers. BPF programs that read only user memory and pt_regs compile fine against them.
    ARCH=$(dpkg --print-architecture)
    apt_install "linux-headers-$ARCH"
    BUILD=$(ls -d /usr/src/linux-headers-*-"$ARCH" | sort -V | tail -n 1)
    COMMON=${BUILD%-"$ARCH"}-common
    mkdir -p "$MODULES"
    ln -sfn "$BUILD" "$MODULES/build"
    ln -sfn "$COMMON" "$MODULES/source"
    say "no headers package for kernel $RELEASE: linked $MODULES/build -> $BUILD and source -> $COMMON (Debian's generic headers)"
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV from /usr/bin/python3 with --system-site-packages (for bcc)"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
STAMP="$VENV/.pybpftrace-installed"
if [ ! -e "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    say "installing pybpftrace (editable) with its test dependencies into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -e '.[test]'
    touch "$STAMP"
fi
"$VENV/bin/python" -c 'import bcc, elftools, click' \
    || { say "the venv cannot import bcc, pyelftools and click" >&2; exit 1; }
say "ready: $VENV/bin/pybpftrace"
