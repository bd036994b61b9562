#!/usr/bin/env bash
# In the guest, as root (vm-test.sh runs it over SSH): the suite (provision.sh) detached from the
# SSH session that starts it, so that neither a lost connection nor the VM being saved to disk
# between two working sessions (vm-test.sh --suspend, then --resume) ends it.
#   guest-suite.sh start WAIT [PYTEST_ARGS...]  start it; WAIT: $PYBPFTRACE_TEST_TIMEOUT
#   guest-suite.sh follow                       its output from the beginning until it ends;
#                                               the exit code is the suite's
set -euo pipefail

RUN=/var/tmp/pybpftrace-suite  # pid, log and status of the suite this guest runs (or ran last)

BOOT=/proc/sys/kernel/random/boot_id

# Whether the suite started last still runs: its PID, in this boot (after a reboot the same
# commands get the same PIDs: the PID of a run discarded while saved once matched, most likely
# the check's own grep), and a process that names $RUN (read by tr, whose command line does not).
running() {
    local cmdline
    [ -s "$RUN/pid" ] && [ ! -e "$RUN/status" ] && [ "$(cat "$RUN/boot" 2>/dev/null)" = "$(cat "$BOOT")" ] \
        && cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$(cat "$RUN/pid")/cmdline") && [[ $cmdline == *"$RUN"* ]]
}

case ${1:-} in
    start)
        [ "$#" -ge 2 ] || { echo "guest-suite: start WAIT [PYTEST_ARGS...]" >&2; exit 2; }
        export PYBPFTRACE_TEST_TIMEOUT=$2
        shift 2
        if running; then
            echo "guest-suite: a suite is already running in this guest (PID $(cat "$RUN/pid")): not starting another" >&2
            exit 1
        fi
        rm -rf "$RUN"
        mkdir -p "$RUN"
        cat "$BOOT" >"$RUN/boot"
        # its own session, its output in the log: nothing ties it to this SSH connection
        setsid bash -c 'echo $$ >"$0/pid"; code=0; bash /vagrant/vagrant/provision.sh /vagrant "$@" || code=$?
                        echo "$code" >"$0/status"' "$RUN" "$@" >"$RUN/log" 2>&1 </dev/null &
        for _ in $(seq 100); do
            [ -s "$RUN/pid" ] && exit 0
            sleep 0.1
        done
        echo "guest-suite: the suite did not start in 10 s" >&2
        exit 1
        ;;
    follow)
        [ -s "$RUN/pid" ] || { echo "guest-suite: no suite was started in this guest" >&2; exit 1; }
        if running; then
            tail -n +1 --pid="$(cat "$RUN/pid")" -f "$RUN/log"
        else
            cat "$RUN/log"
        fi
        [ -s "$RUN/status" ] || { echo "guest-suite: the suite ended without an exit code (killed?)" >&2; exit 1; }
        exit "$(cat "$RUN/status")"
        ;;
    *)
        echo "guest-suite: start WAIT [PYTEST_ARGS...] | follow" >&2
        exit 2
        ;;
esac
