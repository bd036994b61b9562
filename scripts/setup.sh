#!/usr/bin/env bash
# Set up a Debian machine to run and test pybpftrace: apt packages, kernel headers bcc can
# find, and a venv from the system Python (bcc lives in its site-packages). Idempotent: a
# second run changes nothing and says so.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

say() { printf 'setup: %s\n' "$*"; }

# The releases this setup knows, and the --with-dtrace CPython with function probes each has of
# its own (Debian 13's python3.13 has none: CPython 3.12 to 3.14 dropped them; the tests then
# trace the version matrix's bookworm 3.11, scripts/matrix.sh).
release_python() {
    case $1 in
        bookworm) echo python3.11 ;;
        trixie) echo "" ;;
        *) return 1 ;;
    esac
}

# The release: an argument (build-box.sh lists a box's packages), else this machine's.
RELEASE_NAME=${2:-} SYSTEM=${2:-}
if [ -z "$RELEASE_NAME" ] && [ -r /etc/os-release ]; then
    RELEASE_NAME=$(. /etc/os-release && [ "${ID:-}" = debian ] && echo "${VERSION_CODENAME:-}") || true
    SYSTEM=$(. /etc/os-release && echo "${PRETTY_NAME:-}") || true
fi
if ! PROBED_PYTHON=$(release_python "${RELEASE_NAME:-none}"); then
    say "supports Debian 12 (bookworm) and 13 (trixie); this is ${SYSTEM:-an unknown system}: install by hand bcc's Python module (python3-bpfcc), the running kernel's headers, gcc, perl and a --with-dtrace CPython, then make a venv from /usr/bin/python3 with --system-site-packages" >&2
    exit 3
fi

APT_PACKAGES=(
    python3 python3-venv python3-bpfcc   # the tracer's runtime: bcc is not on PyPI
    gcc libc6-dev                        # tests: C fixtures, the event layout check (gcc only
                                         # recommends libc's headers; Debian 12's python3.11-dev
                                         # brought them, Debian 13 has no such package here)
    systemtap-sdt-dev                    # tests: <sys/sdt.h> to build probe fixtures
    perl                                 # tests: flamegraph.pl
    sudo                                 # the README's commands (sudo pybpftrace ...)
    chromium                             # tests: the SVG flame graph and speedscope's app, headless
    tmux                                 # tests: top's live screen in a real terminal
)
if [ -n "$PROBED_PYTHON" ]; then
    # The release's own CPython with function probes, which the demo and the tests trace, and
    # its headers and python3.X-config (tests: an embedded interpreter, the object layouts).
    APT_PACKAGES+=("$PROBED_PYTHON" "lib$PROBED_PYTHON-dev" "$PROBED_PYTHON-dev")
fi

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

# Node.js and npm run the tests' real consumers of output files (tests/browser/package.json):
# Debian's, unless a node and npm are there already.
command -v node >/dev/null || apt_install nodejs
command -v npm >/dev/null || apt_install npm

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
"$VENV/bin/python" -c 'import bcc, elftools, click, google.protobuf' \
    || { say "the venv cannot import bcc, pyelftools, click and protobuf" >&2; exit 1; }

# The tests' consumers of output files: playwright-core (drives Debian's chromium), speedscope's
# app, a pprof decoder, at the versions package-lock.json pins.
BROWSER=tests/browser
if [ ! -e "$BROWSER/node_modules/.pybpftrace-installed" ] || [ "$BROWSER/package-lock.json" -nt "$BROWSER/node_modules/.pybpftrace-installed" ]; then
    say "installing the tests' npm packages into $BROWSER/node_modules"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$BROWSER" --no-audit --no-fund --loglevel=error >/dev/null
    touch "$BROWSER/node_modules/.pybpftrace-installed"
fi

# pybpftrace on root's PATH, sudo's secure_path included: a link into this checkout's venv.
LINK=/usr/local/bin/pybpftrace
COMMAND=$(realpath "$VENV")/bin/pybpftrace
if [ "$(readlink "$LINK" || true)" != "$COMMAND" ]; then
    ln -sfn "$COMMAND" "$LINK"
    say "linked $LINK -> $COMMAND"
fi
say "ready: pybpftrace ($LINK -> $COMMAND)"
