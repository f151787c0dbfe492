"""A wire-exact SMS provider simulator: one HTTP server speaking SMS-MAN, OnlineSim and SMS-Activate.

All three protocols share one state (accounts, inventory, activations, ledger). Run it as a command:

    python -m provisioner.simulator.server --host 127.0.0.1 --port 8800 --key demo-key --sms-delay 3

or in-process on a free loopback port:

    sim = Simulator(host="127.0.0.1", port=0, keys={"test-key": 100}, sms_delay_s=None)
    sim.start()
    sim.base_urls            # {"sms_man": ..., "onlinesim": ..., "sms_activate": ...} -> ProviderSettings.base_url
    sim.deliver(activation_id, "123456", text=None)  # SMS now (sms_delay_s=None: only on demand)
    sim.set_sms_delay(2.0)   # or None: SMS arrive `seconds` after purchase, or never by themselves
    sim.configure(min_cancel_s=120, lifetime_s=900, pool_s=0, early_cancel_style="http409",
                  sms_activate_cancel_statuses=("-1",), dialect="status-codes")
    sim.set_dialect("test-key", "auction")  # SMS-Activate dialect of one key (simulator.dialects)
    sim.advance(121)         # move the simulated clock (minimum cancel time, lifetimes)
    sim.set_offer("tg", "0", price="10.00", count=5)  # native codes; protocol= to pick one
    sim.requests("sms_man", "get-number")  # the request log: params of each call, keys removed
    sim.inject("http", status=502, protocol="onlinesim", action="getNum", nth=2, times=1)
    sim.set_webhook("sms_activate", url, lose=0, duplicate=False)  # POST each SMS there (None: off)
    sim.webhooks_sent        # [Sent(protocol, activation_id, code, sms_at, status, error)]
    sim.ledger()             # Ledger: .entries .purchases .refunds .finishes .open .settled
    sim.purchases            # number of purchases so far
    sim.calls                # [(protocol, action, params without the key)] since the last reset
    sim.balance("test-key")
    sim.reset()              # clean state: keys, offers, config, clock, faults back to start values
    sim.stop()

URL layout on the one server (these are the base URLs):
    /sms-man/control/<action>          SMS-MAN native API (token=)
    /onlinesim/api/<method>.php        OnlineSim native API (apikey= or Bearer)
    /stubs/handler_api.php             SMS-Activate protocol (api_key=, action=)
    /_sim/...                          control: GET ledger, health; POST deliver {activation_id, code,
                                       text?}, inject {kind, ...}, reset, sms-delay {seconds},
                                       advance {seconds}, configure {...}, webhook {protocol, url,
                                       lose?, duplicate?}, dialect {key, dialect}

Faults (`inject(kind, *, protocol=None, action=None, nth=1, times=1, ...)`): the fault matches
calls of that protocol/action (None = any), fires from the `nth` matching call on, `times` times
(None = forever). Kinds: "http" (reply `status`, default 500), "slow" (sleep `delay_s` before
acting and replying), "malformed" (200 with an HTML or `body`), "error" (the protocol's own error
`code`, e.g. "ERROR_SQL"), "no_numbers", "rate_limit". With `execute=True` the real action runs
first and its reply is replaced (or, for "slow", delayed): a purchase whose reply is lost.

Money-safety modes (each a line):
    sim.inject("http", status=502, action="getNumber", execute=True)      # sells, then answers 502
    sim.inject("slow", delay_s=5, action="getNumber", execute=True)       # sells, then stalls
    sim.configure(sms_activate_lists_activations=False)                   # no getActiveActivations
    sim.configure(sms_activate_cancel_statuses=())                        # refuses 8 and -1
    sim.configure(overcharge=Decimal(2), overcharge_times=1)              # charges twice the quote, once
    sim.configure(account_currency={"key": "RUB"})                        # the account bills in RUB
    sim.set_offer("tg", "0", "0.30", 5, dearer="0.80")                    # dearer numbers offered first
    sim.inject("malformed", action="getStatus")                           # garbage, once
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from provisioner.simulator import dialects as sim_dialects
from provisioner.simulator import wire as sim_wire
from provisioner.simulator.code_spaces import CODE_SPACES
from provisioner.simulator.state import Ledger, Offer, SimConfig, SimError, SimState
from provisioner.simulator.webhooks import Sent, WebhookSender
from provisioner.simulator.wire import TEXT, Reply

PROTOCOLS = ("sms_man", "onlinesim", "sms_activate")
SECRET_PARAMS = ("token", "apikey", "api_key")
FAULT_KINDS = ("http", "slow", "malformed", "error", "no_numbers", "rate_limit")


@dataclass
class Fault:
    kind: str
    protocol: str | None = None
    action: str | None = None
    nth: int = 1
    times: int | None = 1
    status: int = 500
    delay_s: float = 3.0
    code: str = "ERROR_SQL"
    body: str = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    execute: bool = False
    seen: int = 0
    fired: int = 0

    def matches(self, protocol: str, action: str) -> bool:
        """Count a matching call and say whether the fault fires on it."""
        if self.protocol not in (None, protocol) or self.action not in (None, action):
            return False
        self.seen += 1
        if self.seen < self.nth or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True

    def reply(self, protocol: str, dialect: str = "classic") -> Reply:
        if self.kind == "http":
            return Reply(self.status, "Internal Server Error" if self.status == 500 else "Bad Gateway", TEXT)
        if self.kind == "malformed":
            return Reply(200, self.body, "text/html")
        if self.kind == "no_numbers":
            return sim_wire.error_reply(protocol, sim_wire.NO_NUMBERS[protocol])
        if self.kind == "rate_limit":
            return sim_wire.rate_limit_reply(protocol)
        return sim_wire.error_reply(protocol, self.code, dialect)


class Simulator:
    """The simulator server and its Python control API (see the module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        keys: Mapping[str, Decimal | float | str] | Iterable[str] | None = None,
        sms_delay_s: float | None = None,
        *,
        balance: Decimal | float | str = Decimal("100"),
        **config: object,
    ) -> None:
        if keys is None:
            keys = ["test-key"]
        if not isinstance(keys, Mapping):
            keys = {k: balance for k in keys}
        self._keys = {k: Decimal(str(v)) for k, v in keys.items()}
        self._config = replace(SimConfig(sms_delay_s=sms_delay_s), **config)  # type: ignore[arg-type]
        self.host, self.port = host, port
        self._faults: list[Fault] = []
        self.calls: list[tuple[str, str, dict[str, str]]] = []  # (protocol, action, params without keys)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.state = self._fresh_state()
        self.webhooks = WebhookSender(self.state)
        self.state.on_sms = self.webhooks.on_sms

    def _fresh_state(self) -> SimState:
        return SimState(balances=dict(self._keys), config=replace(self._config))

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Simulator:
        self._server = _Server((self.host, self.port), _Handler)
        self._server.sim = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="sms-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.webhooks.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_urls(self) -> dict[str, str]:
        root = f"http://{self.host}:{self.port}"
        return {
            "sms_man": f"{root}/sms-man/control/",
            "onlinesim": f"{root}/onlinesim/api/",
            "sms_activate": f"{root}/stubs/handler_api.php",
        }

    # --- control ---------------------------------------------------------------------------

    def reset(self) -> None:
        self.webhooks.reset()
        with self.state.lock:
            self._faults.clear()
            self.calls.clear()
            fresh = self._fresh_state()
            for name in (
                "balances",
                "config",
                "offers",
                "activations",
                "entries",
                "offset",
                "next_id",
                "aliases",
            ):
                setattr(self.state, name, getattr(fresh, name))

    def deliver(self, activation_id: str, code: str, text: str | None = None) -> None:
        with self.state.lock:
            self.state.tick()
            self.state.deliver(activation_id, code, text)

    def set_sms_delay(self, seconds: float | None) -> None:
        with self.state.lock:
            self.state.config.sms_delay_s = seconds

    def configure(self, **options: object) -> None:
        for name in [options.get("dialect", "classic"), *dict(options.get("dialects") or {}).values()]:  # type: ignore[call-overload]
            sim_dialects.get(str(name))
        with self.state.lock:
            self.state.config = replace(self.state.config, **options)  # type: ignore[arg-type]

    def advance(self, seconds: float) -> None:
        with self.state.lock:
            self.state.offset += seconds

    def set_dialect(self, key: str, dialect: str) -> None:
        """The SMS-Activate dialect `key` speaks (simulator.dialects); reset() forgets it."""
        sim_dialects.get(dialect)
        with self.state.lock:
            self.state.config.dialects = {**self.state.config.dialects, key: dialect}

    def set_offer(
        self,
        service: str,
        country: str,
        price: Decimal | float | str,
        count: int,
        *,
        protocol: str | None = None,
        dearer: Decimal | float | str | None = None,
    ) -> None:
        """Set the offer for native codes; without `protocol`, at every protocol whose own code
        space has both codes (ValueError when none has). `dearer`: a level above the listed price,
        sold first whenever the purchase's maxPrice (if any) allows it."""
        protocols = [protocol] if protocol else list(PROTOCOLS)
        matching = [
            p for p in protocols
            if service in CODE_SPACES[p].services and country in CODE_SPACES[p].countries
        ]  # fmt: skip
        if not matching:
            raise ValueError(f"no protocol among {protocols} has service {service!r} in country {country!r}")
        with self.state.lock:
            for p in matching:
                self.state.offers[(p, service, country)] = Offer(
                    Decimal(str(price)), count, Decimal(str(dearer)) if dearer is not None else None
                )

    def requests(self, protocol: str | None = None, action: str | None = None) -> list[dict[str, str]]:
        """The request log: parameters (keys removed) of the calls of `protocol`/`action`, in order."""
        with self.state.lock:
            return [
                dict(params)
                for p, a, params in self.calls
                if protocol in (None, p) and action in (None, a)
            ]  # fmt: skip

    def inject(self, kind: str, **options: object) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULT_KINDS}")
        fault = Fault(kind, **options)  # type: ignore[arg-type]
        with self.state.lock:
            self._faults.append(fault)
        return fault

    def set_webhook(self, protocol: str, url: str | None, *, lose: int = 0, duplicate: bool = False) -> None:
        """POST every SMS of ``protocol`` to ``url`` (None: stop); lose the next ``lose``, or send twice."""
        self.webhooks.configure(protocol, url, lose=lose, duplicate=duplicate)

    @property
    def webhooks_sent(self) -> list[Sent]:
        with self.state.lock:
            return list(self.webhooks.sent)

    def ledger(self) -> Ledger:
        with self.state.lock:
            self.state.tick()
            return self.state.ledger()

    def balance(self, key: str) -> Decimal:
        with self.state.lock:
            self.state.tick()
            return self.state.balances[key]

    @property
    def purchases(self) -> int:
        return len(self.ledger().purchases)

    # --- request handling ------------------------------------------------------------------

    def _fault_for(self, protocol: str, action: str) -> Fault | None:
        with self.state.lock:
            return next((f for f in self._faults if f.matches(protocol, action)), None)

    def handle(self, protocol: str, action: str, params: dict[str, str], authorization: str | None) -> Reply:
        with self.state.lock:
            self.calls.append((protocol, action, {k: v for k, v in params.items() if k not in SECRET_PARAMS}))
        fault = self._fault_for(protocol, action)
        with self.state.lock:
            dialect = (
                self.state.dialect_of(params.get("api_key")) if protocol == "sms_activate" else "classic"
            )
        if fault is not None and fault.kind == "slow" and not fault.execute:
            time.sleep(fault.delay_s)  # stalls before acting
        if fault is not None and fault.kind != "slow" and not fault.execute:
            return fault.reply(protocol, dialect)
        with self.state.lock:
            self.state.tick()
            if protocol == "sms_man":
                reply = sim_wire.sms_man(self.state, action, params)
            elif protocol == "onlinesim":
                reply = sim_wire.onlinesim(self.state, action, params, authorization)
            else:
                reply = sim_wire.sms_activate(self.state, params)
        if fault is not None and fault.kind == "slow" and fault.execute:
            time.sleep(fault.delay_s)  # acted (sold), then stalls before replying
        return fault.reply(protocol, dialect) if fault is not None and fault.kind != "slow" else reply

    def control(self, method: str, action: str, body: dict) -> Reply:
        if method == "GET" and action == "ledger":
            return Reply(200, json.dumps(self.ledger().as_json()))
        if method == "GET" and action == "health":
            return Reply(200, json.dumps({"ok": True, "base_urls": self.base_urls}))
        try:
            if action == "deliver":
                self.deliver(str(body["activation_id"]), str(body["code"]), body.get("text"))
            elif action == "inject":
                fault = self.inject(**body)
                return Reply(
                    200, json.dumps({k: v for k, v in asdict(fault).items() if k not in ("seen", "fired")})
                )
            elif action == "reset":
                self.reset()
            elif action == "sms-delay":
                self.set_sms_delay(body.get("seconds"))
            elif action == "advance":
                self.advance(float(body["seconds"]))
            elif action == "configure":
                if "overcharge" in body:
                    body["overcharge"] = Decimal(str(body["overcharge"]))
                self.configure(**body)
            elif action == "webhook":
                self.set_webhook(
                    str(body["protocol"]),
                    body.get("url"),
                    lose=int(body.get("lose", 0)),
                    duplicate=bool(body.get("duplicate", False)),
                )
            elif action == "dialect":
                self.set_dialect(str(body["key"]), str(body["dialect"]))
            else:
                return Reply(404, json.dumps({"error": f"unknown control action {action!r}"}))
        except (KeyError, TypeError, ValueError, SimError) as exc:
            return Reply(400, json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return Reply(200, json.dumps({"ok": True}))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: Simulator


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # one write per reply: headers and body together (no Nagle stall)

    def log_message(self, format: str, *args: object) -> None:
        pass  # request lines carry keys; the simulator logs nothing

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        sim = self.server.sim
        path = url.path
        if path.startswith("/_sim/"):
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                body = None
            if not isinstance(body, dict):
                reply = Reply(400, json.dumps({"error": "body must be a JSON object"}))
            else:
                reply = sim.control(method, path.removeprefix("/_sim/"), body)
        else:
            if raw and "json" not in (self.headers.get("Content-Type") or ""):
                params.update(parse_qsl(raw, keep_blank_values=True))
            auth = self.headers.get("Authorization")
            if path.startswith("/sms-man/control/"):
                reply = sim.handle("sms_man", path.removeprefix("/sms-man/control/"), params, auth)
            elif path.startswith("/onlinesim/api/") and path.endswith(".php"):
                method_name = path.removeprefix("/onlinesim/api/").removesuffix(".php")
                reply = sim.handle("onlinesim", method_name, params, auth)
            elif path == "/stubs/handler_api.php":
                reply = sim.handle("sms_activate", params.get("action", ""), params, auth)
            else:
                reply = Reply(404, "Not found", TEXT)
        data = reply.body.encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a "slow" fault outlived its timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m provisioner.simulator.server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8800)
    parser.add_argument("--key", action="append", help="API key accepted by all three protocols (repeatable)")
    parser.add_argument("--balance", default="100", help="starting balance of every key")
    parser.add_argument(
        "--sms-delay", type=float, default=None, help="seconds until an SMS arrives (default: never)"
    )
    parser.add_argument("--lifetime", type=float, default=1200.0, help="rental lifetime in seconds")
    parser.add_argument("--min-cancel", type=float, default=0.0, help="seconds before a cancel is allowed")
    parser.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="PROTOCOL=URL",
        help="POST each SMS of sms_activate or onlinesim to URL (repeatable)",
    )
    parser.add_argument(
        "--dialect", default="classic", choices=sim_dialects.NAMES, help="SMS-Activate dialect of every key"
    )
    args = parser.parse_args(argv)
    sim = Simulator(
        host=args.host,
        port=args.port,
        keys=args.key or ["demo-key"],
        sms_delay_s=args.sms_delay,
        balance=args.balance,
        lifetime_s=args.lifetime,
        min_cancel_s=args.min_cancel,
        dialect=args.dialect,
    )
    sim.start()
    for spec in args.webhook:
        protocol, _, url = spec.partition("=")
        sim.set_webhook(protocol, url)
    for name, url in sim.base_urls.items():
        print(f"{name:13} {url}", flush=True)
    print(f"control       http://{sim.host}:{sim.port}/_sim/ledger (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
