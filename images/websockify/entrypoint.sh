#!/bin/sh
# Serve noVNC on 6080 both at / and under the gateway prefix /vnc/$SESSION_ID/, and relay
# WebSocket upgrades (websockify accepts them on any path) to the device's VNC port. With
# STREAM_SECRET set, nothing is served or relayed without it (HTTP Basic, user "stream").
set -eu
WEB="${HOME}/web"
mkdir -p "${WEB}/vnc"
for entry in /usr/share/novnc/*; do
    ln -sfn "${entry}" "${WEB}/$(basename "${entry}")"
done
if [ -n "${SESSION_ID}" ]; then
    ln -sfn /usr/share/novnc "${WEB}/vnc/${SESSION_ID}"
fi
echo "stream: session ${SESSION_ID:-?} -> ${TARGET_HOST}:${TARGET_PORT}"
if [ -n "${STREAM_SECRET:-}" ]; then
    # Every page and WebSocket needs HTTP Basic "stream:<secret>" (the gateway holds the secret).
    exec websockify --web "${WEB}" --web-auth --auth-plugin BasicHTTPAuth \
        --auth-source "stream:${STREAM_SECRET}" 6080 "${TARGET_HOST}:${TARGET_PORT}"
fi
exec websockify --web "${WEB}" 6080 "${TARGET_HOST}:${TARGET_PORT}"
