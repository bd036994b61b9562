#!/usr/bin/env bash
# Build (once) a Vagrant box the VM runs: Debian 12 (bookworm, the default) or Debian 13 (trixie,
# BOX=trixie) for the libvirt provider, made from Debian packages alone, with everything
# `make test` needs already inside, so the guest needs no network:
#   - debootstrap with linux-image-amd64 and its matching linux-headers-amd64, openssh-server,
#     rsync (the synced folder), make, and scripts/setup.sh's own apt packages;
#   - the wheels `pip install -e '.[test]'` needs (pyproject.toml's dependencies and the build
#     backend), for the release's own Python, with a pip.conf that installs from them and never
#     from an index;
#   - the version matrix's chroots, copied from this machine's (scripts/matrix.sh builds them);
#   - no bootloader: a whole-disk ext4 image, booted directly by libvirt with the box's own
#     kernel and initrd (see box/Vagrantfile).
# Cached under $PYBPFTRACE_VM_CACHE (/var/cache/pybpftrace-vm) and rebuilt only when its
# inputs change (this script, box/, the setup and matrix scripts, pyproject.toml, the release);
# then added to Vagrant as the box pybpftrace-RELEASE (its directory keeps the inputs hash, in
# `inputs`).
#   [BOX=trixie] vagrant/build-box.sh         build (when needed), add, and remove older builds'
#                                             leftovers
#   [BOX=trixie] vagrant/build-box.sh --hash  print the inputs hash the box is (or would be)
#                                             built from
set -euo pipefail

CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${PYBPFTRACE_VM_CACHE:-/var/cache/pybpftrace-vm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RELEASE=${BOX:-bookworm}
case $RELEASE in
    bookworm) GUEST_PYTHON=3.11 ;;  # /usr/bin/python3 there: the venv's, and the wheels'
    trixie) GUEST_PYTHON=3.13 ;;
    *) printf 'build-box: BOX is bookworm (Debian 12) or trixie (Debian 13), not %s\n' "$RELEASE" >&2; exit 2 ;;
esac
BOX_NAME=pybpftrace-$RELEASE
BOX_FILE=$CACHE/$BOX_NAME.box
RELEASE_CACHE=$CACHE/$RELEASE  # its build, its inputs hash, its logs
BOX_DIR=${VAGRANT_HOME:-$HOME/.vagrant.d}/boxes/$BOX_NAME/0/libvirt  # where `vagrant box add` puts it
INPUTS=(vagrant/build-box.sh vagrant/box scripts/setup.sh scripts/matrix.sh pyproject.toml)
# What makes it a Vagrant guest, and what provision.sh and scripts/matrix.sh install themselves.
GUEST_PACKAGES=(linux-image-amd64 linux-headers-amd64 systemd-sysv udev openssh-server sudo rsync
                make debootstrap)
export LIBVIRT_DEFAULT_URI=qemu:///system
FREE_SPACE_MIB=3072  # room in the guest's filesystem for the venv, pytest and the tests' files

say() { printf 'build-box: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

inputs_hash() {
    { find "${INPUTS[@]}" -type f -print0 | sort -z | xargs -0 sha256sum; echo "$RELEASE"; } | sha256sum | cut -c1-16
}

cd "$CHECKOUT"
if [ "${1:-}" = "--hash" ]; then
    inputs_hash
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "needs root for debootstrap: run 'sudo make vm-test'"
# shellcheck source=scripts/apt.sh
source scripts/apt.sh
apt_install debootstrap e2fsprogs qemu-utils python3-venv vagrant

# The box Vagrant has, if it is this one: its directory holds the inputs hash it was built from.
added_box_hash() {
    cat "$BOX_DIR/inputs" 2>/dev/null || true
}

# vagrant-libvirt names the box's volume in the pool by this (the box has no version).
box_image_mtime() {
    stat -c %Y "$BOX_DIR/box.img"
}

# Debian's packages into a root filesystem, then what makes it a Vagrant guest.
build_rootfs() {
    local root=$1 packages
    # and Node.js with npm, which setup.sh installs where no node is there already
    packages="$(bash scripts/setup.sh --list-packages "$RELEASE" | tr '\n' ' ')nodejs npm "
    say "debootstrap $RELEASE with ${GUEST_PACKAGES[*]} (a few minutes; log: $RELEASE_CACHE/debootstrap.log)"
    mkdir -p "$CACHE/debs-$RELEASE"
    if ! debootstrap --include="$(IFS=,; echo "${GUEST_PACKAGES[*]}")" --cache-dir="$CACHE/debs-$RELEASE" \
        "$RELEASE" "$root" "$MIRROR" >"$RELEASE_CACHE/debootstrap.log" 2>&1; then
        die "debootstrap failed, see $RELEASE_CACHE/debootstrap.log"
    fi
    # apt, not debootstrap's resolver, for what setup.sh installs: debootstrap does not follow
    # virtual packages (chromium's gtk needs a dbus-session-bus, which it leaves unconfigured).
    say "apt-get install in the guest: $packages(log: $RELEASE_CACHE/apt.log)"
    if ! apt_in_root "$root" $packages >"$RELEASE_CACHE/apt.log" 2>&1; then
        die "apt-get install in the guest's root failed, see $RELEASE_CACHE/apt.log"
    fi
    rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*

    cp -a vagrant/box/rootfs/. "$root/"
    chmod 0440 "$root/etc/sudoers.d/vagrant"
    chroot "$root" systemctl enable --quiet systemd-networkd
    # No housekeeping in the middle of a run: under TCG apt-daily-upgrade, run by its timer an
    # hour into a run, took 12 s of CPU beside a test whose Chromium then lost its GPU process
    # (2026-12-07). Masked as systemctl mask does it, a link to /dev/null.
    local timer
    for timer in apt-daily apt-daily-upgrade dpkg-db-backup logrotate e2scrub_all fstrim man-db; do
        ln -sf /dev/null "$root/etc/systemd/system/$timer.timer"
    done
    chroot "$root" useradd --create-home --shell /bin/bash vagrant
    install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
    # Vagrant's well-known key: the first `vagrant up` replaces it with the machine's own.
    install -m 0600 -o 1000 -g 1000 "$(vagrant_public_key)" "$root/home/vagrant/.ssh/authorized_keys"
    # A new machine ID on each machine's first boot. dbus's own copy goes too (its postinst
    # made one in the build): systemd would take it for an empty /etc/machine-id, and every VM
    # of the box would share it, and with it its DHCP identity and so its address (measured:
    # a second checkout's VM took the first's address, and both lost their SSH).
    : >"$root/etc/machine-id"
    if [ -d "$root/var/lib/dbus" ]; then
        ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"
    fi
}

# apt-get install inside the root, with /proc for maintainer scripts and no services started.
apt_in_root() (
    local root=$1
    shift
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    mount -t proc proc "$root/proc"
    trap 'umount -l "$root/proc"; rm -f "$root/usr/sbin/policy-rc.d"' EXIT
    chroot "$root" apt-get update -q
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends "$@"
)

vagrant_public_key() {
    local key
    key=$(dpkg -L vagrant | grep '/keys/vagrant\.pub$' | head -n 1)
    [ -n "$key" ] || die "the vagrant package has no keys/vagrant.pub"
    printf '%s\n' "$key"
}

# pip download runs here, where PyPI is reachable; the guest's pip installs from these files.
bake_wheels() {
    local root=$1 venv=$CACHE/pip
    local -a requirements
    mapfile -t requirements < <(/usr/bin/python3 - <<'EOF'
import tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)
# The build backend (and wheel, which older setuptools asks for) for the editable install.
print(*project["build-system"]["requires"], "wheel", sep="\n")
print(*project["project"]["dependencies"], sep="\n")
print(*(d for deps in project["project"]["optional-dependencies"].values() for d in deps), sep="\n")
EOF
    )
    say "wheels for the guest's pip (CPython $GUEST_PYTHON): ${requirements[*]}"
    [ -x "$venv/bin/pip" ] || /usr/bin/python3 -m venv "$venv"
    # For the guest's Python, not this machine's: a compiled wheel is made for one version.
    "$venv/bin/pip" download --quiet --disable-pip-version-check --only-binary=:all: \
        --python-version "$GUEST_PYTHON" --implementation cp --platform manylinux2014_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform linux_x86_64 \
        --dest "$root/opt/pybpftrace-wheels" "${requirements[@]}"
}

bake_matrix() {
    local root=$1
    bash scripts/matrix.sh
    local from=${PYBPFTRACE_MATRIX:-/var/cache/pybpftrace-tests}/chroots
    say "copying the version matrix's chroots from $from"
    mkdir -p "$root/var/cache/pybpftrace-tests/chroots"
    # Without the test scripts the host's tests copied into them.
    rsync -a --exclude=/*/opt/pybpftrace-tests "$from/" "$root/var/cache/pybpftrace-tests/chroots/"
}

# The root filesystem as a whole-disk ext4 image (no loop device, no mount), then qcow2.
make_box() {
    local root=$1 staging=$2 used_mib size_mib
    used_mib=$(du -sm "$root" | cut -f1)
    size_mib=$(( (used_mib + FREE_SPACE_MIB + 1023) / 1024 * 1024 ))
    say "image: ${size_mib} MiB ext4 (${used_mib} MiB used)"
    truncate -s "${size_mib}M" "$staging/root.raw"
    mkfs.ext4 -q -L pybpftrace -d "$root" "$staging/root.raw"
    qemu-img convert -O qcow2 "$staging/root.raw" "$staging/box.img"
    rm "$staging/root.raw"
    cp "$(readlink -f "$root/vmlinuz")" "$staging/vmlinuz"
    cp "$(readlink -f "$root/initrd.img")" "$staging/initrd.img"
    cp vagrant/box/Vagrantfile "$staging/Vagrantfile"
    printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' $((size_mib / 1024)) \
        >"$staging/metadata.json"
    printf '%s\n' "$HASH" >"$staging/inputs"
    printf '%s\n' "$BOX_NAME" >"$staging/name"
    tar -C "$staging" -cf "$BOX_FILE.part" metadata.json Vagrantfile vmlinuz initrd.img inputs name box.img
    mv "$BOX_FILE.part" "$BOX_FILE"
}

build_box() {
    local build=$RELEASE_CACHE/build start=$SECONDS
    # An interrupted debootstrap may have left its mounts in there.
    { grep -o " $build/[^ ]*" /proc/mounts || true; } | sort -r | xargs -r -n 1 umount -l
    rm -rf "$build" "$BOX_FILE" "$RELEASE_CACHE/inputs"
    mkdir -p "$build/rootfs" "$build/box"
    build_rootfs "$build/rootfs"
    bake_wheels "$build/rootfs"
    bake_matrix "$build/rootfs"
    make_box "$build/rootfs" "$build/box"
    rm -rf "$build"
    printf '%s\n' "$HASH" >"$RELEASE_CACHE/inputs"
    say "built $BOX_FILE in $((SECONDS - start)) s"
}

add_box() {
    say "vagrant box add $BOX_NAME ($BOX_FILE)"
    vagrant box add --force --name "$BOX_NAME" "$BOX_FILE" >/dev/null
}

# The box gets its own base volume in libvirt's pool at its first `vagrant up`. Older builds'
# volumes and kernels go once no domain (of any checkout) is made from them: vm-test.sh destroys
# its VM made from an older box before it runs this.
remove_older_builds() {
    local in_use volume boot
    in_use=$(box_files_in_use)
    for volume in $(virsh -q vol-list default 2>/dev/null | awk '{print $1}'); do
        if [[ $volume == "${BOX_NAME}_vagrant_box_image_"* && $volume != *"_$(box_image_mtime)_box.img" \
                && $in_use != *"/$volume"* ]]; then
            virsh -q vol-delete --pool default "$volume" >/dev/null && say "removed an older box's volume $volume"
        fi
    done
    for boot in /var/lib/libvirt/boot/"$BOX_NAME"-*; do  # box/Vagrantfile copies the kernel there
        if [[ -d $boot && $boot != *"-$HASH" && $in_use != *"$boot/"* ]]; then
            rm -rf "$boot"
        fi
    done
}

# The backing files and kernels of every domain's disks, running or not.
box_files_in_use() {
    local domain disk
    for domain in $(virsh list --all --name 2>/dev/null); do
        virsh dumpxml "$domain" | sed -n 's/.*<kernel>\(.*\)<\/kernel>.*/\1/p'
        for disk in $(virsh domblklist "$domain" | awk '$2 ~ /^\// {print $2}'); do
            qemu-img info -U "$disk" 2>/dev/null | sed -n 's/^backing file: //p'
        done
    done
}

HASH=$(inputs_hash)
mkdir -p "$RELEASE_CACHE"
# One build at a time on a machine (checkouts share the cache and the box).
exec 9>"$CACHE/lock"
if ! flock -n 9; then
    say "waiting for another build-box.sh to finish (lock $CACHE/lock)"
    flock -w 3600 9 || die "timed out after 3600 s waiting for another build-box.sh (lock $CACHE/lock)"
fi
if [ -e "$BOX_FILE" ] && [ "$(cat "$RELEASE_CACHE/inputs" 2>/dev/null)" = "$HASH" ]; then
    say "$BOX_NAME: ready ($BOX_FILE, inputs $HASH)"
else
    build_box
fi
if [ "$(added_box_hash)" = "$HASH" ]; then
    say "$BOX_NAME: added to Vagrant"
else
    add_box
fi
remove_older_builds
exit 0  # nothing below this line is ever read, even if the file changes while it runs
