#!/bin/sh
# Healthy when the VNC server answers an RFB handshake (its 12-byte "RFB xxx.yyy" banner) in time.
exec timeout "${HEALTH_TIMEOUT_S:-2}" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5900 && head -c 12 <&3 | grep -q "^RFB [0-9]"'
