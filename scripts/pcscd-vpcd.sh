#!/bin/sh
# Start, stop or check pcscd with the vsmartcard vpcd driver, without systemd or udev.
#
#   scripts/pcscd-vpcd.sh start    start pcscd if none answers; wait until it is ready
#   scripts/pcscd-vpcd.sh stop     stop the pcscd whose pid is in /run/pcscd/pcscd.pid
#   scripts/pcscd-vpcd.sh status   exit 0 if pcscd runs and the vpcd ports listen
#
# Needs root (pcscd writes /run/pcscd) and the Debian packages pcscd and vsmartcard-vpcd.
# The integration tests do not need this script: tests/integration/pcscd.py starts pcscd
# itself when none runs. Use it for demos (a software card served with
# sscard.vpcd.VirtualCardSlot, read by any PC/SC program) or to share one daemon in CI.
#
# Why these choices:
# - `--foreground` with output to a file: pcscd's daemon mode logs to syslog, which a
#   container usually lacks, and its log is the only clue when a reader does not show up.
# - no `--debug`/`--apdu`: they would log APDUs, and VERIFY carries the PIN.
# - `--disable-polkit` only when pcscd offers it: Debian 12's build has no polkit; builds
#   with polkit would refuse clients that have no polkit agent.
# - vpcd listens on TCP 35963/35964 on ALL interfaces (Debian's /etc/reader.conf.d/vpcd):
#   anyone who can reach those ports can insert a card. Fine in CI; firewall them elsewhere.
set -eu

RUN_DIR=/run/pcscd
PID_FILE=$RUN_DIR/pcscd.pid
SOCKET=$RUN_DIR/pcscd.comm
VPCD_CONF=/etc/reader.conf.d/vpcd
VPCD_PORT=35963
LOG=${PCSCD_LOG:-${TMPDIR:-/tmp}/pcscd-vpcd.log}
TIMEOUT_S=${PCSCD_START_TIMEOUT_S:-10}

pcscd_bin() {
    command -v pcscd 2>/dev/null || { [ -x /usr/sbin/pcscd ] && echo /usr/sbin/pcscd; } || true
}

# The pid file ends with a NUL byte on pcsc-lite 1.9: strip it before use.
running_pid() {
    [ -f "$PID_FILE" ] || return 1
    pid=$(tr -d '\000\n ' < "$PID_FILE")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" \
        && echo "$pid"
}

vpcd_listening() {
    # /proc/net/tcp lists local ports in hex; 8C7B = 35963, state 0A = LISTEN.
    grep -qi ':8C7B [0-9A-F:]* 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

start() {
    bin=$(pcscd_bin)
    [ -n "$bin" ] || { echo "pcscd not installed: apt-get install pcscd vsmartcard-vpcd" >&2; exit 1; }
    [ -f "$VPCD_CONF" ] || { echo "$VPCD_CONF missing: apt-get install vsmartcard-vpcd" >&2; exit 1; }
    if pid=$(running_pid); then
        echo "pcscd already running (pid $pid)"
    else
        extra=""
        if "$bin" --help 2>&1 | grep -q -- '--disable-polkit'; then extra="--disable-polkit"; fi
        # setsid: the daemon must not die with the shell that started it.
        # shellcheck disable=SC2086
        setsid "$bin" --foreground $extra </dev/null >"$LOG" 2>&1 &
        echo "pcscd started (log: $LOG)"
    fi
    waited=0
    while ! { [ -S "$SOCKET" ] && vpcd_listening; }; do
        if [ "$waited" -ge $((TIMEOUT_S * 10)) ]; then
            echo "pcscd did not become ready with vpcd on port $VPCD_PORT in ${TIMEOUT_S}s" >&2
            tail -n 20 "$LOG" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "pcscd ready: readers 'Virtual PCD 00 00' (port 35963) and 'Virtual PCD 00 01' (35964)"
}

stop() {
    if pid=$(running_pid); then
        kill "$pid"
        waited=0
        while kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
            [ "$waited" -ge 50 ] && { kill -9 "$pid" 2>/dev/null || true; break; }
            sleep 0.1
            waited=$((waited + 1))
        done
        echo "pcscd stopped"
    else
        echo "pcscd not running"
    fi
}

status() {
    if pid=$(running_pid) && vpcd_listening; then
        echo "pcscd running (pid $pid), vpcd listening on $VPCD_PORT"
    else
        echo "pcscd with vpcd not running" >&2
        exit 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
