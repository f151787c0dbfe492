#!/bin/sh
# device-stub: an emulator stand-in. Xvfb + an xterm showing the session id and a clock, served by
# x11vnc on 5900, booting in stages like docker-android: its status file reads CREATING, then
# BOOTING, then READY once the VNC screen answers.
#
# Switches (all optional):
#   BOOT_S=N          seconds before the VNC screen and READY appear (default 0)
#   HANG_AFTER_S=N    N seconds after READY the VNC server freezes (SIGSTOP): it accepts
#                     connections but never answers, while the container keeps running
#   EXIT_AFTER_S=N    N seconds after READY the container exits with code 1
#   STATUS_FILE=F     where the stages are written (default: docker-android's device_status path)
#   VNC_PASSWORD=P    VNC authentication with this password (x11vnc -rfbauth); unset: none
#   FAKE_EXIT_CODE=N  print a few log lines and exit with N at once (an emulator that cannot start)
#   FAKE_DEVICE_STATUS_FILE / FAKE_BOOT_DELAY_S: older names of STATUS_FILE / BOOT_S (default 3)
set -eu

if [ -n "${FAKE_DEVICE_STATUS_FILE:-}" ]; then
    STATUS_FILE="${FAKE_DEVICE_STATUS_FILE}"
    BOOT_S="${BOOT_S:-${FAKE_BOOT_DELAY_S:-3}}"
fi
STATUS_FILE="${STATUS_FILE:-/home/androidusr/device_status}"
stage() {
    echo "$1" > "${STATUS_FILE}.tmp" && mv "${STATUS_FILE}.tmp" "${STATUS_FILE}"
    echo "device-stub: device_status $1"
}
trap 'exit 0' TERM INT

echo "device-stub: session ${SESSION_ID}"
stage CREATING

if [ -n "${FAKE_EXIT_CODE:-}" ]; then
    echo "device-stub: emulator failed to start (FAKE_EXIT_CODE=${FAKE_EXIT_CODE})" >&2
    exit "${FAKE_EXIT_CODE}"
fi

stage BOOTING
if [ "${BOOT_S:-0}" != "0" ]; then
    sleep "${BOOT_S}" &
    wait $!
fi

Xvfb "${DISPLAY}" -screen 0 "${SCREEN_GEOMETRY}" -nolisten tcp -extension GLX >/tmp/xvfb.log 2>&1 &
i=0
until [ -e "/tmp/.X11-unix/X${DISPLAY#:}" ]; do
    i=$((i + 1))
    if [ "$i" -gt 100 ]; then
        echo "device-stub: Xvfb did not start" >&2
        cat /tmp/xvfb.log >&2
        exit 1
    fi
    sleep 0.1
done

xterm -geometry 40x6+40+40 -fa "DejaVu Sans Mono" -fs 28 -bg black -fg "#7CFC00" -T "session ${SESSION_ID}" \
    -e sh -c 'while :; do printf "\033[H\033[2J\n  SESSION %s\n\n  %s\n" "$SESSION_ID" "$(date -u +%H:%M:%S) UTC"; sleep 1; done' \
    >/tmp/xterm.log 2>&1 &

# VNC_PASSWORD set: clients must pass VNC authentication (the gateway does, for its owner).
if [ -n "${VNC_PASSWORD:-}" ]; then
    x11vnc -storepasswd "${VNC_PASSWORD}" /tmp/vncpasswd >/dev/null 2>&1
    VNC_AUTH="-rfbauth /tmp/vncpasswd"
else
    VNC_AUTH="-nopw"
fi
# shellcheck disable=SC2086 # VNC_AUTH is two words or one
x11vnc -display "${DISPLAY}" -forever -shared ${VNC_AUTH} -rfbport 5900 -quiet -noxdamage &
VNC=$!
i=0
until timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5900' 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 100 ] || ! kill -0 "${VNC}" 2>/dev/null; then
        echo "device-stub: x11vnc did not start" >&2
        exit 1
    fi
    sleep 0.1
done
echo "device-stub: serving VNC on 5900"
stage READY

if [ -n "${HANG_AFTER_S:-}" ]; then
    sleep "${HANG_AFTER_S}" &
    wait $!
    kill -STOP "${VNC}"
    echo "device-stub: VNC server hung (HANG_AFTER_S=${HANG_AFTER_S})"
fi
if [ -n "${EXIT_AFTER_S:-}" ]; then
    sleep "${EXIT_AFTER_S}" &
    wait $!
    echo "device-stub: exiting (EXIT_AFTER_S=${EXIT_AFTER_S})" >&2
    exit 1
fi
while :; do
    wait "${VNC}" || true
    if ! kill -0 "${VNC}" 2>/dev/null; then
        echo "device-stub: x11vnc stopped" >&2
        exit 1
    fi
done
