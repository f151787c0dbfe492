"""The simulator's webhooks: it POSTs each SMS to a configured URL, as providers do.

Bodies per protocol (see /work/shared/docs/sms-providers.md):

    sms_activate  {"activationId", "service", "text", "code", "country", "receivedAt"}
    onlinesim     {"number", "sender", "message", "operation_id", "time_left", "webhook_type": "newSms"}

SMS-MAN has no documented webhook. A sender thread delivers in the background (never under the
state lock) and also ticks the state, so SMS due by `sms_delay_s` are sent on time even when no
request comes in. `lose` drops the next N webhooks (a lost delivery), `duplicate` sends each twice.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from provisioner.simulator.state import Activation, SimState

WEBHOOK_PROTOCOLS = ("sms_activate", "onlinesim")
TICK_S = 0.05


@dataclass
class WebhookConfig:
    url: str
    lose: int = 0  # drop the next N webhooks
    duplicate: bool = False  # send each one twice


@dataclass(frozen=True)
class Sent:
    protocol: str
    activation_id: str
    code: str
    sms_at: float  # time.time() when the SMS arrived at the "provider"
    status: int | None  # HTTP status the receiver answered; None: lost on purpose or unreachable
    error: str = ""
    duration_s: float = 0.0  # how long the receiver took to answer


def body_for(act: Activation, state: SimState) -> dict:
    if act.protocol == "onlinesim":
        return {
            "number": act.phone,
            "sender": "Telegram",
            "message": act.text,
            "operation_id": int(act.id),
            "time_left": max(0, int(act.bought_at + state.config.lifetime_s - state.now())),
            "webhook_type": "newSms",
        }
    return {
        "activationId": act.id,
        "service": act.service,
        "text": act.text,
        "code": act.code,
        "country": int(act.country) if act.country.isdigit() else act.country,
        "receivedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


@dataclass
class WebhookSender:
    """Background delivery of SMS webhooks for one simulator."""

    state: SimState
    configs: dict[str, WebhookConfig] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def configure(self, protocol: str, url: str | None, *, lose: int = 0, duplicate: bool = False) -> None:
        if protocol not in WEBHOOK_PROTOCOLS:
            raise ValueError(f"no webhook for {protocol!r}; expected one of {WEBHOOK_PROTOCOLS}")
        with self.state.lock:
            if url:
                self.configs[protocol] = WebhookConfig(url, lose, duplicate)
            else:
                self.configs.pop(protocol, None)
        if url:
            self.start()

    def on_sms(self, act: Activation) -> None:
        """Called by the state (under its lock) when an SMS arrives."""
        config = self.configs.get(act.protocol)
        if config is None:
            return
        body = body_for(act, self.state)
        copies = 2 if config.duplicate else 1
        if config.lose > 0:
            config.lose -= 1
            self.sent.append(Sent(act.protocol, act.id, act.code or "", time.time(), None, "lost on purpose"))
            return
        self._queue.put((act.protocol, act.id, act.code or "", time.time(), config.url, body, copies))

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for target, name in ((self._deliver, "sim-webhooks"), (self._tick, "sim-ticker")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()

    def reset(self) -> None:
        with self.state.lock:
            self.configs.clear()
            self.sent.clear()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            if self.configs:
                with self.state.lock:
                    self.state.tick()

    def _deliver(self) -> None:
        with httpx.Client(timeout=3.0) as client:
            while True:
                item = self._queue.get()
                if item is None or self._stop.is_set():
                    return
                protocol, act_id, code, sms_at, url, body, copies = item
                for _ in range(copies):
                    posted = time.monotonic()
                    try:
                        status, error = client.post(url, json=body).status_code, ""
                    except httpx.HTTPError as exc:
                        status, error = None, type(exc).__name__
                    took = time.monotonic() - posted
                    self.sent.append(Sent(protocol, act_id, code, sms_at, status, error, took))
