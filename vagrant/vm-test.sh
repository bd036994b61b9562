#!/usr/bin/env bash
# make vm-test: the whole suite inside a Vagrant VM. Sets up what it needs (idempotent, with
# messages), builds the box (build-box.sh, cached), boots the VM, runs vagrant/provision.sh in
# it, reports the guest's kernel and the result, and halts the VM. The exit code is the suite's.
#   [BOX=bookworm|trixie|all] vagrant/vm-test.sh              the whole suite
#   [BOX=bookworm|trixie|all] vagrant/vm-test.sh PYTEST_ARGS  only those tests (CI's smoke run)
# BOX: the Debian release the VM runs (the Vagrantfile's machine of that name): 12 (bookworm,
# the default), 13 (trixie), or each in turn (all; the exit code is the first failure's).
# Every wait has a timeout that names what it waited for.
set -euo pipefail

VAGRANT_DIR=$(cd "$(dirname "$0")" && pwd -P)
CHECKOUT=$(dirname "$VAGRANT_DIR")
UP_TIMEOUT=${PYBPFTRACE_VM_UP_TIMEOUT:-900}          # box upload, boot, SSH, rsync
SUITE_TIMEOUT=${PYBPFTRACE_VM_SUITE_TIMEOUT:-14400}  # the whole suite under TCG: see the README
KVM_PROBE_TIMEOUT=15
LIBVIRT=qemu:///system
NETWORK=pybpftrace-vm  # vagrant/network.xml
HOST_PACKAGES=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients dnsmasq-base
               vagrant vagrant-libvirt rsync)
# Vagrant must not look for updates of itself or the box: only Debian's archive is reachable.
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1 LIBVIRT_DEFAULT_URI=$LIBVIRT

say() { printf 'vm-test: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds, or fail naming WHAT.
wait_for() {
    local seconds=$1 what=$2 deadline=$((SECONDS + $1))
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out after $seconds s waiting for $what"
        sleep 1
    done
}

check_host() {
    [ "$(id -u)" -eq 0 ] || die "needs root to run libvirt and build the box: run 'sudo make vm-test'"
    command -v apt-get >/dev/null || die "this setup is for Debian (apt-get not found)"
    [ "$(uname -m)" = x86_64 ] || die "the box is amd64: this machine is $(uname -m)"
    # shellcheck source=scripts/apt.sh
    source "$CHECKOUT/scripts/apt.sh"
    apt_install "${HOST_PACKAGES[@]}"
    command -v qemu-system-x86_64 >/dev/null || die "no qemu-system-x86_64 (package qemu-system-x86)"
    command -v libvirtd >/dev/null || die "no libvirtd (package libvirt-daemon-system)"
    [[ $(vagrant plugin list 2>/dev/null) == *vagrant-libvirt* ]] || die "Vagrant has no vagrant-libvirt plugin"
}

# The tests' npm packages (tests/browser/package-lock.json) reach the guest with the checkout
# (rsync): it has no network to fetch them. Installed here as make setup would.
host_npm_packages() {
    local browser=$CHECKOUT/tests/browser stamp=$CHECKOUT/tests/browser/node_modules/.pybpftrace-installed
    if [ -e "$stamp" ] && [ ! "$browser/package-lock.json" -nt "$stamp" ]; then
        return
    fi
    command -v npm >/dev/null || apt_install npm
    say "installing the tests' npm packages into $browser/node_modules, for the guest (it has no network)"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$browser" --no-audit --no-fund --loglevel=error >/dev/null
    touch "$stamp"
}

# No systemd here: the daemons are started by hand when they are not running.
start_libvirt() {
    local daemon
    for daemon in virtlogd libvirtd; do
        if ! pgrep -x "$daemon" >/dev/null; then
            say "starting $daemon"
            "$daemon" -d </dev/null >/dev/null 2>&1 || die "$daemon -d failed"
        fi
    done
    wait_for 30 "libvirtd to answer on $LIBVIRT" virsh version
    [[ $(virsh capabilities) == *"<domain type='qemu'"* ]] || die "libvirt offers no qemu domains on this machine"
    if ! virsh net-info "$NETWORK" >/dev/null 2>&1; then
        say "defining the VM's isolated network $NETWORK (vagrant/network.xml)"
        virsh -q net-define "$VAGRANT_DIR/network.xml" >/dev/null
    fi
    if [[ $(virsh net-info "$NETWORK") =~ Active:\ +no ]]; then
        say "starting the network $NETWORK"
        virsh -q net-start "$NETWORK" >/dev/null
    fi
}

# The network goes down with the last running VM on it (another checkout's may still be up).
stop_network_if_unused() {
    local domain
    for domain in $(virsh list --name); do
        [[ $(virsh domiflist "$domain") != *" $NETWORK "* ]] || return 0
    done
    say "stopping the network $NETWORK"
    virsh -q net-destroy "$NETWORK" >/dev/null 2>&1 || true
}

# KVM that opens is not KVM that works: boot the box's kernel with no root filesystem, which
# panics (and, with -no-reboot, ends qemu) within a second or two wherever KVM really runs it.
libvirt_driver() {
    local kernel=$1
    if [ ! -e /dev/kvm ]; then
        echo qemu
        return
    fi
    local console
    console=$(timeout "$KVM_PROBE_TIMEOUT" qemu-system-x86_64 -accel kvm -m 256 -nodefaults -nographic \
        -no-reboot -serial stdio -kernel "$kernel" -append "console=ttyS0 panic=-1" 2>/dev/null) || true
    if [[ $console == *"Kernel panic"* ]]; then
        echo kvm
    else
        echo qemu
    fi
}

BOX=${BOX:-bookworm}
case $BOX in
    bookworm | trixie) ;;
    all)
        status=0
        for release in bookworm trixie; do
            BOX=$release bash "$0" "$@" || { code=$?; [ "$status" -ne 0 ] || status=$code; }
        done
        exit "$status"
        ;;
    *) die "BOX is bookworm (Debian 12), trixie (Debian 13) or all, not $BOX" ;;
esac
export BOX
BOX_DIR=${VAGRANT_HOME:-$HOME/.vagrant.d}/boxes/pybpftrace-$BOX/0/libvirt  # build-box.sh adds it
BOX_MARK=$VAGRANT_DIR/.vagrant/pybpftrace-box-$BOX  # the box's inputs hash this checkout's VM was made from
DOMAIN="pybpftrace-$(printf '%s' "$CHECKOUT" | sha256sum | cut -c1-8)-$BOX"  # as the Vagrantfile names it

# A domain of this checkout that Vagrant does not know (its .vagrant went with an old clone), or
# one made from an older box, goes before `vagrant up`.
remove_stale_vm() {
    local box_hash=$1 id_file=$VAGRANT_DIR/.vagrant/machines/$BOX/libvirt/id
    if [ -e "$id_file" ] && [ "$(cat "$BOX_MARK" 2>/dev/null)" != "$box_hash" ]; then
        say "the box changed since this VM was made: destroying it"
        local status=0
        timeout 300 vagrant destroy -f "$BOX" >/dev/null || status=$?
        [ "$status" -ne 124 ] || die "timed out after 300 s waiting for vagrant destroy"
        [ "$status" -eq 0 ] || die "vagrant destroy failed (exit $status): is another vagrant command on this machine still running?"
    fi
    if virsh dominfo "$DOMAIN" >/dev/null 2>&1 \
            && [ "$(virsh domuuid "$DOMAIN")" != "$(cat "$id_file" 2>/dev/null)" ]; then
        say "removing a leftover domain $DOMAIN that Vagrant does not know"
        remove_domain
    fi
}

remove_domain() {
    virsh -q destroy "$DOMAIN" >/dev/null 2>&1 || true
    virsh -q undefine "$DOMAIN" --remove-all-storage >/dev/null 2>&1 || true
}

# vagrant-libvirt's upload progress, thousands of updates on one line, is of no use in a log.
without_progress() {
    sed -u -E 's/\x1b\[K//g; s/Progress: [0-9]+%//g'
}

# Halted, it boots again for the next run; with PYBPFTRACE_VM_DESTROY=1 (CI, whose clone goes
# after the run) it is destroyed instead.
stop_vm() {
    if [ "${PYBPFTRACE_VM_DESTROY:-0}" = 1 ]; then
        say "destroying the VM"
        timeout 180 vagrant destroy -f "$BOX" >/dev/null 2>&1 \
            || { say "vagrant destroy did not finish in 180 s: removing $DOMAIN"; remove_domain; }
    else
        say "halting the VM"
        timeout 180 vagrant halt "$BOX" >/dev/null 2>&1 \
            || { say "vagrant halt did not finish in 180 s: stopping $DOMAIN"; virsh -q destroy "$DOMAIN" >/dev/null 2>&1 || true; }
    fi
    stop_network_if_unused
}

main() {
    local start=$SECONDS phase box_hash driver kernel status
    check_host
    host_npm_packages
    start_libvirt
    # A VM made from an older box goes first, so that build-box.sh can remove that box's files.
    box_hash=$(bash "$VAGRANT_DIR/build-box.sh" --hash)
    cd "$VAGRANT_DIR"
    remove_stale_vm "$box_hash"
    phase=$SECONDS
    bash "$VAGRANT_DIR/build-box.sh"
    say "box ready in $((SECONDS - phase)) s"
    driver=$(libvirt_driver "$BOX_DIR/vmlinuz")
    [ "$driver" = kvm ] && say "KVM runs a guest kernel here: driver kvm" \
        || say "no working KVM (no /dev/kvm, or a guest kernel did not boot under it in $KVM_PROBE_TIMEOUT s): driver qemu (TCG, slower)"
    export PYBPFTRACE_VM_DRIVER=$driver

    trap stop_vm EXIT
    phase=$SECONDS
    say "vagrant up $BOX (domain $DOMAIN; guest console: $VAGRANT_DIR/.vagrant/console-$BOX.log)"
    mkdir -p .vagrant
    printf '%s\n' "$box_hash" >"$BOX_MARK"
    status=0
    timeout "$UP_TIMEOUT" vagrant up "$BOX" --no-provision 2>&1 | without_progress || status=$?
    [ "$status" -ne 124 ] || die "timed out after $UP_TIMEOUT s waiting for vagrant up (box upload, boot, SSH, rsync)"
    [ "$status" -eq 0 ] || die "vagrant up failed (exit $status); the guest's console: $VAGRANT_DIR/.vagrant/console-$BOX.log"
    say "VM up in $((SECONDS - phase)) s"

    kernel=$(timeout 60 vagrant ssh "$BOX" --no-tty -c 'uname -r' | tr -d '\r') \
        || die "timed out after 60 s waiting for the guest to answer uname -r over SSH"
    phase=$SECONDS
    status=0
    # Under TCG the guest runs several times slower: the tests' waits (for a tracer to attach,
    # a target to answer) get three times as long; what they assert stays as it is.
    timeout "$SUITE_TIMEOUT" vagrant ssh "$BOX" --no-tty -c \
        "sudo PYBPFTRACE_TEST_TIMEOUT=$([ "$driver" = kvm ] && echo 60 || echo 180) bash /vagrant/vagrant/provision.sh /vagrant${*:+$(printf ' %q' "$@")}" \
        || status=$?
    [ "$status" -ne 124 ] || say "timed out after $SUITE_TIMEOUT s waiting for the suite in the VM"
    say "$BOX guest, kernel $kernel: $([ "$status" -eq 0 ] && echo passed || echo "FAILED (exit $status)")" \
        "in $((SECONDS - phase)) s; $((SECONDS - start)) s in all"
    return "$status"
}

# The whole suite names each test file as it goes (pytest -q -v: a line of results per file),
# so that a run cut short (over an hour under TCG) still says where its failures were.
[ "$#" -gt 0 ] || set -- -v
main "$@"; exit  # never read further: the file may change while it runs
