#!/bin/sh
# Healthy when websockify answers: noVNC's page is served on 6080.
exec python3 -c 'import base64, os, sys, urllib.request
request = urllib.request.Request("http://127.0.0.1:6080/vnc.html")
secret = os.environ.get("STREAM_SECRET")
if secret:
    request.add_header("Authorization", "Basic " + base64.b64encode(("stream:" + secret).encode()).decode())
try:
    sys.exit(0 if urllib.request.urlopen(request, timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)'
