#!/bin/sh
# device-stub: Xvfb + an xterm showing the session id and a clock, served by x11vnc on 5900.
#
# Test switches:
#   FAKE_EXIT_CODE=N            print a few log lines and exit with N at once
#   FAKE_DEVICE_STATUS_FILE=F   write BOOTING to F, then READY after FAKE_BOOT_DELAY_S (default 3)
set -eu

echo "device-stub: session ${SESSION_ID}"

if [ -n "${FAKE_EXIT_CODE:-}" ]; then
    echo "device-stub: emulator failed to start (FAKE_EXIT_CODE=${FAKE_EXIT_CODE})" >&2
    exit "${FAKE_EXIT_CODE}"
fi

if [ -n "${FAKE_DEVICE_STATUS_FILE:-}" ]; then
    echo BOOTING > "${FAKE_DEVICE_STATUS_FILE}"
    (
        sleep "${FAKE_BOOT_DELAY_S:-3}"
        echo READY > "${FAKE_DEVICE_STATUS_FILE}.tmp"
        mv "${FAKE_DEVICE_STATUS_FILE}.tmp" "${FAKE_DEVICE_STATUS_FILE}"
        echo "device-stub: device_status READY"
    ) &
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

echo "device-stub: serving VNC on 5900"
exec x11vnc -display "${DISPLAY}" -forever -shared -nopw -rfbport 5900 -quiet -noxdamage
