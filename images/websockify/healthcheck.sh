#!/bin/sh
# Healthy when websockify answers: noVNC's page is served on 6080.
exec python3 -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen("http://127.0.0.1:6080/vnc.html", timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)'
