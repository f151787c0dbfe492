"""`GET /s/{id}`: the session page for people. The device's screen (noVNC, framed from
/vnc/{id}/), the full number with a copy button, the code as soon as it arrives (a long poll of
`GET /sessions/{id}/code`, no reload), the state and the time left, and a Release button.

Opened with the session's signed link (steps.links), which sets the cookie that the page's own
requests then carry; the link is taken out of the address bar at once and never sent on as a
Referer. The page is only ever served to whoever may see the session (gateway.owners).
"""

from __future__ import annotations

import html
import json
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from provisioner.gateway.api import e164, session_json
from provisioner.gateway.owners import owned, unknown_session
from provisioner.steps.streams import vnc_page_path
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Session {sid}</title>
<style nonce="{nonce}">
body{{font-family:sans-serif;margin:0;color:#222;display:flex;flex-direction:column;height:100vh}}
header{{display:flex;flex-wrap:wrap;gap:1.5em;align-items:center;padding:.6em 1em;background:#f3f3f3}}
header div{{display:flex;gap:.4em;align-items:center}}
.label{{color:#777;font-size:.85em}}
#phone,#code{{font-family:monospace;font-size:1.3em;font-weight:bold}}
#code.waiting{{color:#999;font-weight:normal;font-size:1em}}
button{{font-size:.95em;padding:.3em .8em;cursor:pointer}}
#release{{margin-left:auto;background:#b3261e;color:#fff;border:0;border-radius:3px}}
iframe{{flex:1;border:0;width:100%;background:#000}}
</style></head>
<body>
<header>
  <div><span class="label">session</span><code>{sid}</code></div>
  <div><span class="label">state</span><strong id="state">{state}</strong></div>
  <div><span class="label">time left</span><span id="left">-</span></div>
  <div><span class="label">number</span><span id="phone">{phone}</span>
    <button id="copy" type="button">Copy</button></div>
  <div><span class="label">code</span><span id="code" class="waiting">waiting</span></div>
  <button id="release" type="button">Release</button>
</header>
<iframe id="screen" title="device screen" src="{screen}"></iframe>
<script nonce="{nonce}">
const SESSION = {session_json};
const ENDED = ["releasing", "released", "expired", "failed", "cancelled", "orphaned"];
history.replaceState(null, "", location.pathname);  // the link stays out of history and screenshots
const $ = (id) => document.getElementById(id);
let expiresAt = SESSION.expires_at ? Date.parse(SESSION.expires_at) : null;
let lastCodeAt = null;
let ended = ENDED.includes(SESSION.state);

function show(s) {{
  $("state").textContent = s.state;
  if (s.phone) $("phone").textContent = s.phone;
  expiresAt = s.expires_at ? Date.parse(s.expires_at) : null;
  ended = ENDED.includes(s.state);
  $("release").disabled = ended;
}}
function showCode(c) {{
  $("code").textContent = c.code;
  $("code").className = "";
  lastCodeAt = c.at;
}}
function tick() {{
  if (!expiresAt) return;
  const s = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
  $("left").textContent = Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
}}
async function refresh() {{
  try {{
    const r = await fetch("/sessions/" + SESSION.id, {{headers: {{"Accept": "application/json"}}}});
    if (r.ok) show(await r.json());
  }} catch (e) {{}}
}}
async function waitForCodes() {{
  while (!ended) {{
    const after = lastCodeAt ? "&after=" + encodeURIComponent(lastCodeAt) : "";
    try {{
      const r = await fetch("/sessions/" + SESSION.id + "/code?wait=50" + after);
      if (r.status === 200) {{ showCode(await r.json()); continue; }}
      if (r.status === 204) continue;
      if (r.status === 410) {{ await refresh(); return; }}
    }} catch (e) {{}}
    await new Promise((done) => setTimeout(done, 2000));
  }}
}}
$("copy").addEventListener("click", async () => {{
  const text = $("phone").textContent;
  try {{ await navigator.clipboard.writeText(text); }} catch (e) {{
    const range = document.createRange(); range.selectNodeContents($("phone"));
    getSelection().removeAllRanges(); getSelection().addRange(range); document.execCommand("copy");
  }}
  $("copy").textContent = "Copied";
  setTimeout(() => {{ $("copy").textContent = "Copy"; }}, 1500);
}});
$("release").addEventListener("click", async () => {{
  if (!confirm("Release this session? Its device and number are given up.")) return;
  $("release").disabled = true;
  await fetch("/sessions/" + SESSION.id, {{method: "DELETE"}});
  await refresh();
}});
show(SESSION);
if (SESSION.code) showCode({{code: SESSION.code, at: SESSION.code_at}});
tick(); setInterval(tick, 1000); setInterval(refresh, 3000);
waitForCodes();
</script>
</body></html>
"""


async def session_page(request: Request) -> Response:
    gw = request.app.state.gateway
    session_id = request.path_params["session_id"]

    def read() -> dict | None:
        with gw.deps.sessions() as db:
            row = repo.find_session(db, session_id)
            if row is None:
                return None
            body = session_json(gw, row)
            coded = [x for x in lease_repo.leases_for_session(db, session_id) if x.code]
            latest = max(coded, key=lambda x: (x.code_at is not None, x.code_at, x.id), default=None)
            body["code"] = latest.code if latest else row.verification_code
            body["code_at"] = latest.code_at.isoformat() if latest and latest.code_at else None
            return body

    body = await run_in_threadpool(read)
    if body is None:
        return unknown_session(request, session_id)
    nonce = secrets.token_urlsafe(16)
    page = _PAGE.format(
        sid=html.escape(session_id),
        state=html.escape(body["state"]),
        phone=html.escape(e164(body["phone"]) or "not rented yet"),
        screen=html.escape(vnc_page_path(session_id)),
        nonce=nonce,
        # Inside <script>: '<', '>' and '&' escaped so no value can close the element.
        session_json=json.dumps(
            {k: body.get(k) for k in ("id", "state", "phone", "expires_at", "code", "code_at")}
        )
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026"),
    )
    headers = {
        "Content-Security-Policy": (
            f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        ),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return HTMLResponse(page, headers=headers)


routes = [Route("/s/{session_id}", owned(session_page), methods=["GET"])]
