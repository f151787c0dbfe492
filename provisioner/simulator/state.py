"""The provider simulator's protocol-neutral state: accounts, offers, activations, clock, ledger.

Used by `provisioner.simulator.server` (HTTP and faults) and `provisioner.simulator.wire` (the three wire formats).
Time is `time.monotonic()` plus an offset that `advance()` moves, so tests can pass a rental
lifetime or a minimum cancel time without sleeping. Due SMS and expiries are applied lazily by
`tick()`, which every request and every ledger read calls.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from provisioner.simulator.code_spaces import CODE_SPACES, offer_keys

OPEN = ("waiting", "code")


class SimError(Exception):
    """A refused operation; `reason` is protocol-neutral, sim_wire renders it per protocol."""

    def __init__(self, reason: str, **data: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


@dataclass
class SimConfig:
    lifetime_s: float = 1200.0
    min_cancel_s: float = 0.0
    sms_delay_s: float | None = None  # None: SMS only on demand (deliver)
    pool_s: float = 0.0  # OnlineSim: seconds in TZ_INPOOL before a number is assigned
    early_cancel_style: str = "text"  # SMS-Activate: "text" or "http409"
    sms_activate_cancel_statuses: tuple[str, ...] = ("8", "-1")
    onlinesim_revise_new_tzid: bool = False  # setOperationRevise answers a new tzid for the next SMS
    dialect: str = "classic"  # SMS-Activate dialect of every key without its own (simulator.dialects)
    dialects: dict[str, str] = field(default_factory=dict)  # key -> dialect
    sms_activate_lists_activations: bool = True  # False: getActiveActivations answers BAD_ACTION
    # Charging more than quoted: each sale costs `overcharge` times its price, for the next
    # `overcharge_times` sales (None: every one).
    overcharge: Decimal = Decimal(1)
    overcharge_times: int | None = None
    # key -> the currency (ISO 4217 code) the account bills in, named in balance replies (SMS-MAN,
    # OnlineSim), getNumberV2 and getActiveActivations; unset: each protocol's usual.
    account_currency: dict[str, str] = field(default_factory=dict)


@dataclass
class Offer:
    price: Decimal  # what price lists show
    count: int
    dearer: Decimal | None = None  # a dearer level sold first while maxPrice (if any) allows it


@dataclass
class Activation:
    id: str
    protocol: str
    key: str
    service: str
    country: str
    phone: str
    price: Decimal
    bought_at: float
    number_at: float
    bought_wall: float = 0.0  # time.time() at purchase (activationTime in listings)
    status: str = "waiting"  # waiting | code | finished | cancelled | expired
    code: str | None = None
    text: str | None = None
    previous_code: str | None = None
    deliver_at: float | None = None
    public_id: str | None = None  # OnlineSim: the tzid after a revise that answered a new one


@dataclass(frozen=True)
class LedgerEntry:
    kind: str  # purchase | refund | finish
    activation_id: str
    protocol: str
    amount: Decimal
    reason: str = ""


@dataclass(frozen=True)
class Ledger:
    entries: list[LedgerEntry]
    open: list[str]  # ids of activations neither finished nor refunded

    @property
    def purchases(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.kind == "purchase"]

    @property
    def refunds(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.kind == "refund"]

    @property
    def finishes(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.kind == "finish"]

    @property
    def settled(self) -> bool:
        """No money lost: nothing open and every purchase finished or refunded exactly once."""
        closed = [e.activation_id for e in self.entries if e.kind != "purchase"]
        bought = [e.activation_id for e in self.purchases]
        return not self.open and sorted(closed) == sorted(bought)

    def as_json(self) -> dict:
        return {
            "entries": [{**e.__dict__, "amount": str(e.amount)} for e in self.entries],
            "open": self.open,
            "settled": self.settled,
        }


def default_offers() -> dict[tuple[str, str, str], Offer]:
    """(protocol, service, country) -> offer: every pair of each protocol's own code space."""
    return {
        (protocol, s, c): Offer(Decimal("10.00"), 100)
        for protocol in CODE_SPACES
        for s, c in offer_keys(protocol)
    }


@dataclass
class SimState:
    balances: dict[str, Decimal]
    config: SimConfig = field(default_factory=SimConfig)
    offers: dict[tuple[str, str, str], Offer] = field(default_factory=default_offers)
    activations: dict[str, Activation] = field(default_factory=dict)
    entries: list[LedgerEntry] = field(default_factory=list)
    offset: float = 0.0
    next_id: int = 1001
    aliases: dict[str, str] = field(default_factory=dict)  # public id -> activation id
    lock: threading.RLock = field(default_factory=threading.RLock)
    on_sms: Callable[[Activation], None] | None = None  # webhooks (simulator.webhooks), under the lock

    def now(self) -> float:
        return time.monotonic() + self.offset

    def tick(self) -> None:
        """Deliver due SMS and expire rentals whose lifetime is over (refunding those without SMS)."""
        now = self.now()
        for act in self.activations.values():
            if (
                act.status == "waiting"
                and act.deliver_at is not None
                and now >= max(act.deliver_at, act.number_at)
            ):
                self._receive(act, f"{random.randint(0, 999999):06d}")
            if act.status in OPEN and now >= act.bought_at + self.config.lifetime_s:
                if act.status == "code":
                    self._close(act, "finished", "finish", "lifetime over, auto-completed")
                else:
                    self._close(act, "expired", "refund", "lifetime over, no SMS")

    def _receive(self, act: Activation, code: str, text: str | None = None) -> None:
        act.status, act.code, act.deliver_at = "code", code, None
        act.text = text or f"Your verification code is {code}"
        if self.on_sms is not None:
            self.on_sms(act)

    def _close(self, act: Activation, status: str, kind: str, reason: str) -> None:
        act.status = status
        if kind == "refund":
            self.balances[act.key] += act.price
        self.entries.append(LedgerEntry(kind, act.id, act.protocol, act.price, reason))

    def offers_of(self, protocol: str) -> dict[tuple[str, str], Offer]:
        """(service, country) -> offer of one protocol."""
        return {(s, c): o for (p, s, c), o in self.offers.items() if p == protocol}

    def currency_of(self, key: str | None) -> str | None:
        return self.config.account_currency.get(key or "")

    def dialect_of(self, key: str | None) -> str:
        return self.config.dialects.get(key or "", self.config.dialect)

    def check_key(self, key: str | None) -> str:
        if not key:
            raise SimError("no_key")
        if key not in self.balances:
            raise SimError("bad_key")
        return key

    def buy(
        self,
        protocol: str,
        key: str,
        service: str,
        country: str,
        max_price: Decimal | None,
        charge: Decimal = Decimal(1),
    ) -> Activation:
        """Sell a number at the offer's price times `charge` (an auction charges less than listed)."""
        space = CODE_SPACES[protocol]
        if service not in space.services:
            raise SimError("bad_service")
        if country not in space.countries:
            raise SimError("bad_country")
        offer = self.offers.get((protocol, service, country))
        if offer is None or offer.count <= 0:
            raise SimError("no_numbers")
        levels = [p for p in (offer.dearer, offer.price) if p is not None]
        level = next((p for p in levels if max_price is None or p <= max_price), None)
        if level is None:
            raise SimError("price_above", price=offer.price)
        if self.config.overcharge != 1 and self.config.overcharge_times != 0:
            charge *= self.config.overcharge
            if self.config.overcharge_times is not None:
                self.config.overcharge_times -= 1
        price = (level * charge).quantize(Decimal("0.01"))
        if self.balances[key] < price:
            raise SimError("no_balance")
        now = self.now()
        act_id, self.next_id = str(self.next_id), self.next_id + 1
        pool = self.config.pool_s if protocol == "onlinesim" else 0.0
        delay = self.config.sms_delay_s
        act = Activation(
            id=act_id,
            protocol=protocol,
            key=key,
            service=service,
            country=country,
            phone=f"+7900{int(act_id):07d}",
            price=price,
            bought_at=now,
            bought_wall=time.time() + self.offset,
            number_at=now + pool,
            deliver_at=None if delay is None else now + pool + delay,
        )
        offer.count -= 1
        self.balances[key] -= price
        self.activations[act_id] = act
        self.entries.append(LedgerEntry("purchase", act_id, protocol, price))
        return act

    def get(self, key: str, act_id: str) -> Activation:
        act_id = str(act_id)
        act = self.activations.get(self.aliases.get(act_id, act_id))
        if act is None or act.key != key or act.public_id not in (None, act_id):
            raise SimError("no_activation")  # a replaced public id is gone
        return act

    def reissue(self, act: Activation) -> str:
        """Give an activation a new public id (the old one stops answering); the ledger keeps its id."""
        public_id, self.next_id = str(self.next_id), self.next_id + 1
        self.aliases[public_id] = act.id
        act.public_id = public_id
        return public_id

    def cancel(self, key: str, act_id: str, *, honour_min: bool = True) -> Activation:
        """Refund an activation that got no SMS."""
        act = self.get(key, act_id)
        if act.status in ("cancelled", "expired"):
            raise SimError("already")
        if act.status == "finished":
            raise SimError("finished")
        if act.status == "code":
            raise SimError("has_code")
        remaining = act.bought_at + self.config.min_cancel_s - self.now()
        if honour_min and remaining > 0:
            raise SimError("too_early", remaining=remaining)
        self._close(act, "cancelled", "refund", "cancelled")
        return act

    def finish(self, key: str, act_id: str, *, honour_min: bool = True) -> Activation:
        """Complete an activation; one that got no SMS is closed with a refund (as a cancel)."""
        act = self.get(key, act_id)
        if act.status == "waiting":
            return self.cancel(key, act_id, honour_min=honour_min)
        if act.status != "code":
            raise SimError("already" if act.status != "finished" else "finished")
        self._close(act, "finished", "finish", "finished")
        return act

    def retry(self, key: str, act_id: str) -> Activation:
        """Ask for another code: back to waiting, remembering the previous one."""
        act = self.get(key, act_id)
        if act.status != "code":
            raise SimError("bad_status")
        act.status, act.previous_code, act.code = "waiting", act.code, None
        if self.config.sms_delay_s is not None:
            act.deliver_at = self.now() + self.config.sms_delay_s
        return act

    def deliver(self, act_id: str, code: str, text: str | None = None) -> None:
        act = self.activations.get(str(act_id))
        if act is None:
            raise SimError("no_activation")
        if act.status != "waiting":
            raise SimError("bad_status")
        self._receive(act, code, text)

    def ledger(self) -> Ledger:
        return Ledger(
            entries=list(self.entries),
            open=[a.id for a in self.activations.values() if a.status in OPEN],
        )
