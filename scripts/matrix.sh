#!/usr/bin/env bash
# Build (once) the CPython version matrix the tests trace: Debian chroots, each with real
# --with-dtrace interpreters, under a directory the tests own. Idempotent: a chroot is built
# only when its stamp is missing, so a half-built one is rebuilt.
#
#   bullseye  python3.9             function entry/return and line probes
#   bookworm  python3.11            function entry/return and line probes: the tests' 3.11 where
#                                   this machine has none of its own (Debian 13)
#   trixie    python3.13            gc, import and audit probes only
#   sid       python3.14 python3.15 3.14 like 3.13; 3.15 with function entry/return restored
set -euo pipefail

MATRIX=${PYBPFTRACE_MATRIX:-/var/cache/pybpftrace-tests}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CHROOTS=(
    "bullseye python3.9 libpython3.9"
    "bookworm python3.11 libpython3.11"
    "trixie python3.13 libpython3.13"
    "sid python3.14 libpython3.14 python3.15 libpython3.15"
)

say() { printf 'matrix: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    say "needs root for debootstrap: run 'sudo make matrix'" >&2
    exit 1
fi
# shellcheck source=scripts/apt.sh
source "$(dirname "$0")/apt.sh"
apt_install debootstrap

# What a failed debootstrap left mounted inside a root (its /proc), deepest first: a root is
# removed only once nothing is mounted in it.
unmount_under() {
    local mounted
    mounted=$(awk -v root="$1/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r)
    [ -z "$mounted" ] || printf '%s\n' "$mounted" | xargs -r -d '\n' umount -l
}

mkdir -p "$MATRIX/chroots" "$MATRIX/debs"
# One build at a time: make matrix beside vm-test's box build (which runs this script too) had
# two debootstraps in one root, and each removed what the other made.
exec 9>"$MATRIX/.lock"
if ! flock -n 9; then
    say "another matrix build is running: waiting for it"
    flock 9
fi
for entry in "${CHROOTS[@]}"; do
    read -r suite packages <<<"$entry"
    root=$MATRIX/chroots/$suite
    stamp=$root.ready
    if [ -e "$stamp" ]; then
        say "$suite: ready ($root)"
        continue
    fi
    unmount_under "$root"
    rm -rf --one-file-system "$root"
    say "$suite: building with ${packages// /, } (about a minute)"
    start=$SECONDS
    if ! debootstrap --variant=minbase --include="${packages// /,}" --cache-dir="$MATRIX/debs" \
        "$suite" "$root" "$MIRROR" >"$root.log" 2>&1; then
        unmount_under "$root"  # debootstrap leaves its /proc mounted when a package fails to install
        say "$suite: debootstrap failed, see $root.log and $root/debootstrap/debootstrap.log" >&2
        exit 1
    fi
    rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
    touch "$stamp"
    say "$suite: built in $((SECONDS - start)) s"
done
