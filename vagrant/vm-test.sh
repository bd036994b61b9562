#!/usr/bin/env bash
# make vm-test: the whole suite inside a Vagrant VM. Sets up what it needs (idempotent, with
# messages), builds the box (build-box.sh, cached), boots the VM, runs vagrant/provision.sh in
# it, reports the guest's kernel and the result, and halts the VM. The exit code is the suite's.
#   [BOX=bookworm|trixie|all] vagrant/vm-test.sh              the whole suite
#   [BOX=bookworm|trixie|all] vagrant/vm-test.sh PYTEST_ARGS  only those tests (CI's smoke run)
# BOX: the Debian release the VM runs (the Vagrantfile's machine of that name): 12 (bookworm,
# the default), 13 (trixie), or each in turn (all; the exit code is the first failure's).
# SHARDS=N (1 to 4; 1 by default): N VMs of the release at once, each running every N-th test
# (pytest --shard K/N): under TCG a VM keeps about one core busy (clang compiling), so on a
# machine with N cores or more the suite takes nearly N times less.
# PARTS=K,L,... (all of 1 to SHARDS by default): only those parts now, in their own machines
# (RELEASE for part 1, RELEASE-K for part K): a suite longer than a working session, on a machine
# that is not kept between sessions, run part by part from one commit (the README says how).
# The suite runs detached inside each guest (vagrant/guest-suite.sh): a run longer than a working
# session can be saved to disk and carried on later, the guests' clocks stopped meanwhile:
#   vagrant/vm-test.sh --suspend   save the running machines of BOX and SHARDS to disk (their
#                                  suites freeze where they are; the run in progress ends
#                                  without halting them)
#   vagrant/vm-test.sh --resume    start them again where they were, follow each suite to its end
#                                  (its output from the beginning), report and halt, as a run does
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

EMULATOR=/usr/local/libexec/pybpftrace/qemu-single-tcg  # vagrant/qemu-single-tcg, installed

# emulator_for DRIVER: the qemu libvirt runs the VMs with. Under TCG, vagrant/qemu-single-tcg
# (installed where libvirt's qemu user can run it): qemu with the virtual CPUs on one host thread.
emulator_for() {
    if [ "$1" = kvm ]; then
        echo /usr/bin/qemu-system-x86_64
        return
    fi
    if ! cmp -s "$VAGRANT_DIR/qemu-single-tcg" "$EMULATOR"; then
        say "installing $EMULATOR (vagrant/qemu-single-tcg: TCG's virtual CPUs on one host thread)" >&2
        install -D -m 755 "$VAGRANT_DIR/qemu-single-tcg" "$EMULATOR"
    fi
    echo "$EMULATOR"
}

# set_emulator DOMAIN PATH: a domain made before runs PATH from its next start (vagrant-libvirt
# sets the emulator only when it makes a domain).
set_emulator() {
    local xml
    virsh dominfo "$1" >/dev/null 2>&1 || return 0
    xml=$(mktemp)
    virsh dumpxml --inactive "$1" >"$xml"
    if ! grep -qF "<emulator>$2</emulator>" "$xml"; then
        say "${1#"$DOMAIN_PREFIX"}: its emulator is now $2"
        sed -i "s|<emulator>[^<]*</emulator>|<emulator>$2</emulator>|" "$xml"
        virsh -q define "$xml" >/dev/null
    fi
    rm -f "$xml"
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
SHARDS=${SHARDS:-1}
[[ $SHARDS =~ ^[1-4]$ ]] || die "SHARDS is how many VMs share the suite, 1 to 4 (vagrant/Vagrantfile's SHARDS_MAX), not $SHARDS"
PARTS=${PARTS:-$(seq -s, 1 "$SHARDS")}
[[ $PARTS =~ ^[1-4](,[1-4])*$ ]] || die "PARTS is which parts of the SHARDS to run now, as 1,3 (1 to $SHARDS), not $PARTS"
IFS=, read -r -a PART_LIST <<<"$PARTS"
for part in "${PART_LIST[@]}"; do
    [ "$part" -le "$SHARDS" ] || die "PARTS names part $part of $SHARDS: there are only $SHARDS"
done
[ "$(printf '%s\n' "${PART_LIST[@]}" | sort -u | wc -l)" -eq "${#PART_LIST[@]}" ] \
    || die "PARTS names a part twice ($PARTS): each part runs in its own machine, once"
machine_of() {  # PART: the Vagrantfile's machine that runs it (RELEASE, then RELEASE-2, ...)
    if [ "$1" -eq 1 ]; then echo "$BOX"; else echo "$BOX-$1"; fi
}
MACHINES=()
for part in "${PART_LIST[@]}"; do MACHINES+=("$(machine_of "$part")"); done
BOX_DIR=${VAGRANT_HOME:-$HOME/.vagrant.d}/boxes/pybpftrace-$BOX/0/libvirt  # build-box.sh adds it
DOMAIN_PREFIX="pybpftrace-$(printf '%s' "$CHECKOUT" | sha256sum | cut -c1-8)-"  # as the Vagrantfile names them

# The box's inputs hash this checkout's VM was made from.
box_mark() { printf '%s' "$VAGRANT_DIR/.vagrant/pybpftrace-box-$1"; }

# A domain of this checkout that Vagrant does not know (its .vagrant went with an old clone), or
# one made from an older box, goes before `vagrant up`.
remove_stale_vm() {
    local machine=$1 box_hash=$2 id_file=$VAGRANT_DIR/.vagrant/machines/$1/libvirt/id domain=$DOMAIN_PREFIX$1
    if [ -e "$id_file" ] && [ "$(cat "$(box_mark "$machine")" 2>/dev/null)" != "$box_hash" ]; then
        say "the box changed since $machine was made: destroying it"
        local status=0
        timeout 300 vagrant destroy -f "$machine" >/dev/null || status=$?
        [ "$status" -ne 124 ] || die "timed out after 300 s waiting for vagrant destroy"
        [ "$status" -eq 0 ] || die "vagrant destroy failed (exit $status): is another vagrant command on this machine still running?"
    fi
    if virsh dominfo "$domain" >/dev/null 2>&1 \
            && [ "$(virsh domuuid "$domain")" != "$(cat "$id_file" 2>/dev/null)" ]; then
        say "removing a leftover domain $domain that Vagrant does not know"
        remove_domain "$domain"
    fi
}

remove_domain() {
    virsh -q destroy "$1" >/dev/null 2>&1 || true
    virsh -q undefine "$1" --remove-all-storage >/dev/null 2>&1 || true
}

# vagrant-libvirt's upload progress, thousands of updates on one line, is of no use in a log.
without_progress() {
    sed -u -E 's/\x1b\[K//g; s/Progress: [0-9]+%//g'
}

is_running() {  # DOMAIN
    [[ $(virsh domstate "$1" 2>/dev/null) == running ]]
}

# Whether the domain is saved to disk (--suspend), not running.
is_saved() {
    [[ $(virsh dominfo "$1" 2>/dev/null) =~ Managed\ save:\ +yes ]] && ! is_running "$1"
}

# Halted, it boots again for the next run; with PYBPFTRACE_VM_DESTROY=1 (CI, whose clone goes
# after the run) it is destroyed instead. One saved to disk (--suspend) stays so.
stop_vm() {
    local machine domain
    rm -f "$RUNNER_PID"
    for machine in "${MACHINES[@]}"; do
        domain=$DOMAIN_PREFIX$machine
        if is_saved "$domain"; then
            say "$machine stays saved to disk: 'vm-test.sh --resume' carries its suite on"
        elif [ "${PYBPFTRACE_VM_DESTROY:-0}" = 1 ]; then
            say "destroying $machine"
            timeout 180 vagrant destroy -f "$machine" >/dev/null 2>&1 \
                || { say "vagrant destroy did not finish in 180 s: removing $domain"; remove_domain "$domain"; }
        else
            say "halting $machine"
            timeout 180 vagrant halt "$machine" >/dev/null 2>&1 \
                || { say "vagrant halt did not finish in 180 s: stopping $domain"; virsh -q destroy "$domain" >/dev/null 2>&1 || true; }
        fi
    done
    stop_network_if_unused
}

# run_suite MACHINE WAIT PYTEST_ARGS...: the suite (or those tests) started in the machine, then
# followed to its end; its exit code.
run_suite() {
    local machine=$1 wait=$2
    shift 2
    timeout 120 vagrant ssh "$machine" --no-tty -c \
        "sudo bash /vagrant/vagrant/guest-suite.sh start $wait${*:+$(printf ' %q' "$@")}" || return
    follow_suite "$machine"
}

# follow_suite MACHINE: the output of the suite the machine runs, from its beginning to its end;
# its exit code. A kernel panic in the guest ends it at once (watch_console).
follow_suite() {
    local follower watcher status=0
    timeout "$SUITE_TIMEOUT" vagrant ssh "$1" --no-tty -c "sudo bash /vagrant/vagrant/guest-suite.sh follow" &
    follower=$!
    watch_console "$1" "$follower" &
    watcher=$!
    wait "$follower" || status=$?
    kill "$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
    return "$status"
}

# watch_console MACHINE PID: while PID follows the machine's suite, a kernel panic on its console
# (written from now on) ends PID's processes, saying so: the SSH session would otherwise wait for
# a guest that no longer runs until the suite's timeout, hours later (as under MTTCG: see
# qemu-single-tcg).
watch_console() {
    local machine=$1 pid=$2 log=$VAGRANT_DIR/.vagrant/console-$1.log offset size
    offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
    while kill -0 "$pid" 2>/dev/null; do
        sleep "${PYBPFTRACE_VM_CONSOLE_POLL:-10}"
        size=$(stat -c %s "$log" 2>/dev/null || echo 0)
        [ "$size" -ge "$offset" ] || offset=0  # a new console log: the machine was started again
        if tail -c +"$((offset + 1))" "$log" 2>/dev/null | grep -q 'Kernel panic - not syncing'; then
            say "$machine: the guest's kernel panicked (its console: $log); its suite cannot go on"
            # shellcheck disable=SC2046
            kill -TERM $(process_tree "$pid") 2>/dev/null || true
            return
        fi
    done
}

shard_suite() {  # SHARD WAIT PYTEST_ARGS...: that part of them in its machine
    local shard=$1
    shift
    run_suite "$(machine_of "$shard")" "$@" --shard "$shard/$SHARDS"
}

shard_follow() {  # SHARD: the part its machine runs, followed
    follow_suite "$(machine_of "$1")"
}

# The machines stop (or stay saved) when this run ends, and --suspend can find it.
begin_run() {
    trap stop_vm EXIT
    mkdir -p "$VAGRANT_DIR/.vagrant"
    echo "$$" >"$RUNNER_PID"
}

# each_part SINGLE PART ARGS...: SINGLE MACHINE ARGS... in the one machine, or with SHARDS=N,
# PART SHARD ARGS... in every part at once (in_parts); the exit code is the suite's.
each_part() {
    local single=$1 part=$2 status=0
    shift 2
    if [ "$SHARDS" -gt 1 ]; then
        in_parts "$part" "$@"
        return
    fi
    "$single" "$BOX" "$@" || status=$?
    [ "$status" -ne 124 ] || say "timed out after $SUITE_TIMEOUT s waiting for the suite in the VM"
    return "$status"
}

# in_parts FUNCTION ARGS...: FUNCTION SHARD ARGS... for the PARTS at once, each line of theirs
# marked with its part; the exit code is the first failing part's.
in_parts() {
    local shard status=0 code
    local statuses
    statuses=$(mktemp -d)
    for shard in "${PART_LIST[@]}"; do
        {
            code=0
            "$1" "$shard" "${@:2}" 2>&1 | sed -u "s|^|[part $shard/$SHARDS] |" || code=${PIPESTATUS[0]}
            echo "$code" >"$statuses/$shard"
        } &
    done
    wait
    for shard in "${PART_LIST[@]}"; do
        code=$(cat "$statuses/$shard" 2>/dev/null || echo 1)
        [ "$code" -ne 124 ] || say "part $shard/$SHARDS: timed out after $SUITE_TIMEOUT s"
        say "part $shard/$SHARDS ($(machine_of "$shard")): $([ "$code" -eq 0 ] && echo passed || echo "FAILED (exit $code)")"
        [ "$status" -ne 0 ] || status=$code
    done
    rm -rf "$statuses"
    return "$status"
}

main() {
    local start=$SECONDS phase box_hash driver kernel status machine wait
    check_host
    host_npm_packages
    start_libvirt
    # A VM made from an older box goes first, so that build-box.sh can remove that box's files.
    box_hash=$(bash "$VAGRANT_DIR/build-box.sh" --hash)
    cd "$VAGRANT_DIR"
    for machine in "${MACHINES[@]}"; do
        remove_stale_vm "$machine" "$box_hash"
        if is_saved "$DOMAIN_PREFIX$machine"; then  # vagrant up would carry that run on
            say "$machine was saved to disk with a suite running (--suspend): discarding it for this new run"
            virsh -q managedsave-remove "$DOMAIN_PREFIX$machine" >/dev/null
        fi
    done
    phase=$SECONDS
    bash "$VAGRANT_DIR/build-box.sh"
    say "box ready in $((SECONDS - phase)) s"
    driver=$(libvirt_driver "$BOX_DIR/vmlinuz")
    [ "$driver" = kvm ] && say "KVM runs a guest kernel here: driver kvm" \
        || say "no working KVM (no /dev/kvm, or a guest kernel did not boot under it in $KVM_PROBE_TIMEOUT s): driver qemu (TCG, slower)"
    export PYBPFTRACE_VM_DRIVER=$driver
    PYBPFTRACE_VM_EMULATOR=$(emulator_for "$driver")
    export PYBPFTRACE_VM_EMULATOR
    for machine in "${MACHINES[@]}"; do
        set_emulator "$DOMAIN_PREFIX$machine" "$PYBPFTRACE_VM_EMULATOR"
    done

    begin_run
    phase=$SECONDS
    say "vagrant up ${MACHINES[*]} (domains ${DOMAIN_PREFIX}MACHINE; guest consoles: $VAGRANT_DIR/.vagrant/console-MACHINE.log)"
    mkdir -p .vagrant
    for machine in "${MACHINES[@]}"; do
        printf '%s\n' "$box_hash" >"$(box_mark "$machine")"
    done
    status=0
    timeout "$UP_TIMEOUT" vagrant up "${MACHINES[@]}" --no-provision 2>&1 | without_progress || status=$?
    [ "$status" -ne 124 ] || die "timed out after $UP_TIMEOUT s waiting for vagrant up (box upload, boot, SSH, rsync)"
    [ "$status" -eq 0 ] || die "vagrant up failed (exit $status); the guests' consoles: $VAGRANT_DIR/.vagrant/console-MACHINE.log"
    say "VM$([ "${#MACHINES[@]}" -eq 1 ] || echo s) up in $((SECONDS - phase)) s"

    kernel=$(timeout 60 vagrant ssh "${MACHINES[0]}" --no-tty -c 'uname -r' | tr -d '\r') \
        || die "timed out after 60 s waiting for the guest to answer uname -r over SSH"
    phase=$SECONDS
    status=0
    # Under TCG the guest runs several times slower: the tests' waits (for a tracer to attach,
    # a target to answer) get three times as long; what they assert stays as it is.
    wait=$([ "$driver" = kvm ] && echo 60 || echo 180)
    each_part run_suite shard_suite "$wait" "$@" || status=$?
    say "$BOX guest$([ "$SHARDS" -eq 1 ] || echo "s (parts $PARTS of $SHARDS)"), kernel $kernel:" \
        "$([ "$status" -eq 0 ] && echo passed || echo "FAILED (exit $status)") in $((SECONDS - phase)) s; $((SECONDS - start)) s in all"
    return "$status"
}

process_tree() {  # PID: it and its descendants
    local child
    echo "$1"
    for child in $(pgrep -P "$1"); do process_tree "$child"; done
}

# --suspend: the machines saved to disk, their suites frozen; the run that follows them ends
# (stop_vm leaves saved machines as they are).
suspend() {
    local machine domain runner
    check_host
    cd "$VAGRANT_DIR"
    for machine in "${MACHINES[@]}"; do
        is_running "$DOMAIN_PREFIX$machine" \
            || die "$machine is not running: there is no suite of BOX=$BOX SHARDS=$SHARDS PARTS=$PARTS to save"
    done
    for machine in "${MACHINES[@]}"; do
        domain=$DOMAIN_PREFIX$machine
        say "saving $machine to disk"
        timeout 600 virsh -q managedsave "$domain" >/dev/null || die "virsh managedsave $domain failed or took over 600 s"
    done
    runner=$(cat "$RUNNER_PID" 2>/dev/null || true)
    if [ -n "$runner" ] && kill -0 "$runner" 2>/dev/null; then
        say "ending the run that followed them (PID $runner)"
        # all at once: a shell waiting on a command takes its TERM only once the command ends
        # shellcheck disable=SC2046
        kill -TERM $(process_tree "$runner") 2>/dev/null || true
    fi
    stop_network_if_unused
    say "saved: 'BOX=$BOX SHARDS=$SHARDS PARTS=$PARTS vagrant/vm-test.sh --resume' carries the suites on"
}

# renew_lease DOMAIN: its link on the network taken down and up again, so that the guest (its
# systemd-networkd) asks the network's DHCP server for its address anew. The network --suspend
# stopped starts without the leases it had, and vagrant-libvirt finds a guest only by its lease:
# without one the machine is "inaccessible" and vagrant ssh refuses it.
renew_lease() {
    local mac
    mac=$(virsh domiflist "$1" | awk -v net="$NETWORK" '$3 == net { print $5; exit }')
    [ -n "$mac" ] || die "$1 has no interface on the network $NETWORK"
    virsh -q domif-setlink "$1" "$mac" down >/dev/null
    sleep 2
    virsh -q domif-setlink "$1" "$mac" up >/dev/null
}

has_lease() {  # DOMAIN
    [[ $(virsh domifaddr "$1" --source lease) == *ipv4* ]]
}

# --resume: the saved machines started where they were, each suite followed to its end.
resume() {
    local start=$SECONDS machine status kernel
    check_host
    start_libvirt
    cd "$VAGRANT_DIR"
    for machine in "${MACHINES[@]}"; do
        is_saved "$DOMAIN_PREFIX$machine" || is_running "$DOMAIN_PREFIX$machine" \
            || die "$machine has no run saved to disk to resume ('vm-test.sh --suspend' saves one)"
    done
    for machine in "${MACHINES[@]}"; do
        if is_running "$DOMAIN_PREFIX$machine"; then  # a --resume that failed to follow it
            say "$machine runs already: following its suite"
            continue
        fi
        say "starting $machine where it was saved"
        timeout 600 virsh -q start "$DOMAIN_PREFIX$machine" >/dev/null || die "virsh start $DOMAIN_PREFIX$machine failed"
        renew_lease "$DOMAIN_PREFIX$machine"
    done
    # Until the machines are followed, a failure leaves them running, their suites with them:
    # halting them would throw away the run.
    local again="they run on: 'vm-test.sh --suspend' saves them again, 'vagrant halt' ends them"
    for machine in "${MACHINES[@]}"; do
        wait_for 120 "a DHCP lease for $machine, by which vagrant finds it ($again)" has_lease "$DOMAIN_PREFIX$machine"
    done
    kernel=$(timeout 120 vagrant ssh "${MACHINES[0]}" --no-tty -c 'uname -r' | tr -d '\r') \
        || die "the guest did not answer uname -r over SSH within 120 s ($again)"
    begin_run
    status=0
    each_part follow_suite shard_follow || status=$?
    say "$BOX guest$([ "$SHARDS" -eq 1 ] || echo "s (parts $PARTS of $SHARDS)"), kernel $kernel, resumed:" \
        "$([ "$status" -eq 0 ] && echo passed || echo "FAILED (exit $status)"); $((SECONDS - start)) s since resumed"
    return "$status"
}

RUNNER_PID=$VAGRANT_DIR/.vagrant/vm-test-$BOX.pid  # the run in progress, for --suspend to end
case ${1:-} in
    --suspend) suspend; exit ;;
    --resume) resume; exit ;;
esac
# The whole suite names each test file as it goes (pytest -q -v: a line of results per file),
# so that a run cut short (over an hour under TCG) still says where its failures were.
[ "$#" -gt 0 ] || set -- -v
main "$@"; exit  # never read further: the file may change while it runs
