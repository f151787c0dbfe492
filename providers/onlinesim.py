"""OnlineSim native API client (`<base><method>.php`, JSON, key as a Bearer token).

Quirks kept here: every reply has `response` (1 on success, else an error code); getState answers
an array, `msg` may be false, and `TZ_INPOOL` means no number yet (acquire asks getNum with
number=true and, when the number is still missing, polls getState briefly); setOperationOk is
both finish and cancel (closing an operation without SMS releases the frozen money), so cancel
first reads the state: an operation whose code arrived raises NotRefundable (finish it) instead of
being closed as if refunded; NO_COMPLETE_TZID = closed too early, inside the protective interval
(2 minutes by default, longer for some services): the wait is the rest of the 2 minutes, then backs
off (15 s, 15 s, 30 s, 60 s ... up to 10 minutes) instead of hammering; getState is sent with
`clean=0` so a code already shown is shown again; setOperationRevise may answer a new tzid for the
next SMS, and the lease it returns follows it. getState without tzid lists every open operation,
so `list_open_activations` works here.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from providers._http import NO_OFFER, Http, currency_of, parse_decimal, purchase_call, purchase_price
from providers.base import (
    Account,
    Cancelled,
    CheckResult,
    CodeReceived,
    Expired,
    Lease,
    OpenActivation,
    PriceInfo,
    Waiting,
)
from providers.catalog import Entry, Listing
from providers.errors import (
    CancelTooEarly,
    MalformedReply,
    NotRefundable,
    ProviderError,
    PurchaseUnknown,
    StopError,
    TransientError,
    UnavailableError,
    api_key_var,
)
from provisioner.settings.model import ProviderSettings, env_var_for

NAME = "onlinesim"
PROTECTIVE_INTERVAL_S = 120.0
CLOSE_BACKOFF_MIN_S, CLOSE_BACKOFF_MAX_S = 15.0, 600.0
WAITING_STATES = {"TZ_INPOOL", "TZ_NUM_PREPARE", "TZ_NUM_WAIT", "TZ_NUM_WAIT_RETRY"}
GONE = {"ERROR_WRONG_TZID", "ERROR_NO_OPERATIONS", "LIFICYCLE_NUM_EXPIRED"}

_STOP = {
    "ERROR_WRONG_KEY": "api_key",
    "ERROR_NO_KEY": "api_key",
    "ACCOUNT_BLOCKED": "api_key",
    "API_ACCESS_DISABLED": "api_key",
    "API_ACCESS_IP": "api_key",
    "WARNING_LOW_BALANCE": "api_key",
    "ERROR_NO_SERVICE": "services",  # a code outside its catalog: fix the override
    "ERROR_PARAMS": "countries",
}
_UNAVAILABLE = {"WARNING_NO_NUMS", "NO_NUMBER", "EXCEEDED_CONCURRENT_OPERATIONS", "DUPLICATE_OPERATION"}
_TRANSIENT = {"INTERVAL_CONCURRENT_REQUESTS_ERROR", "TRY_AGAIN_LATER", "TIME_INTERVAL_ERROR", "ERROR_SQL"}


class OnlineSimProvider:
    """OnlineSim over its native JSON API."""

    def __init__(
        self,
        settings: ProviderSettings,
        client: httpx.Client | None = None,
        *,
        currency: str = "USD",
        number_wait_s: float = 10.0,
        number_poll_s: float = 0.5,
        allow_unquoted: bool = False,
    ) -> None:
        self.name = NAME
        self.allow_unquoted = allow_unquoted
        self.currency = currency
        self.number_wait_s = number_wait_s
        self.number_poll_s = number_poll_s
        self._base = settings.base_url.rstrip("/") + "/"
        self._http = Http(NAME, settings, client)

    def __repr__(self) -> str:
        return f"OnlineSimProvider(base_url={self._base!r})"

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, **params: str) -> object:
        """The decoded reply; an object whose `response` is not 1 raises the mapped error."""
        headers = {"Authorization": f"Bearer {self._http.key}"}
        response = self._http.get(method, f"{self._base}{method}.php", params, headers=headers)
        data = self._http.json(method, response)
        if isinstance(data, dict) and "response" in data and str(data["response"]) != "1":
            raise self._error(method, str(data["response"]))
        if response.status_code >= 400 or not isinstance(data, dict | list):
            raise self._http.malformed(method, response)
        return data

    def _error(self, method: str, code: str) -> ProviderError:
        message = f"{NAME} {method}: {code}"
        if code in _STOP:
            field = _STOP[code]
            setting = api_key_var(NAME) if field == "api_key" else env_var_for(("providers", NAME, field))
            return StopError(message, provider=NAME, action=method, code=code, setting=setting)
        if code in _TRANSIENT:
            return TransientError(message, provider=NAME, action=method, code=code)
        return UnavailableError(message, provider=NAME, action=method, code=code)

    def balance(self) -> Decimal:
        return self.account().balance

    def account(self) -> Account:
        """getBalance; its currency where the reply names one."""
        data = self._call("getBalance")
        assert isinstance(data, dict)
        amount = parse_decimal(data.get("balance"), provider=NAME, action="getBalance", body=str(data))
        return Account(amount, currency_of(data.get("currency")))

    def price(self, service: str, country: str) -> PriceInfo:
        data = self._call("getNumbersStats", country=country)
        services = data.get("services") if isinstance(data, dict) else None
        if not isinstance(services, dict):
            raise self._http.malformed("getNumbersStats", data, "no services")
        for offer in services.values():
            if isinstance(offer, dict) and service in (offer.get("slug"), offer.get("service")):
                cost = parse_decimal(
                    offer.get("price"), provider=NAME, action="getNumbersStats", body=str(offer)
                )
                return PriceInfo(price=cost, available=int(offer.get("count") or 0), currency=self.currency)
        raise UnavailableError(
            f"{NAME} getNumbersStats: no offer for {service} in country {country}",
            provider=NAME,
            action="getNumbersStats",
            code=NO_OFFER,
        )

    def acquire(self, service: str, country: str, max_price: Decimal | None) -> Lease:
        price, source = purchase_price(
            lambda: self.price(service, country),
            max_price,
            provider=self.name,
            action="getNum",
            server_side_cap=False,  # getNum takes no maxPrice
            allow_unquoted=self.allow_unquoted,
        )
        with purchase_call(NAME, "getNum"):
            data = self._call("getNum", service=service, country=country, number="true")
            tzid = data.get("tzid") if isinstance(data, dict) else None
            if tzid is None:
                raise self._http.malformed("getNum", data, "no tzid")
        assert isinstance(data, dict)
        number = str(data.get("number") or "") or self._wait_for_number(str(tzid))
        return Lease(
            provider=NAME,
            activation_id=str(tzid),
            phone="+" + number.lstrip("+"),
            price=price,
            currency=self.currency,
            bought_at=datetime.now(UTC),
            price_source=source,
        )

    def _wait_for_number(self, tzid: str) -> str:
        """Poll getState while the operation is TZ_INPOOL; the number is assigned within seconds."""
        deadline = time.monotonic() + self.number_wait_s
        while True:
            state = self._state(tzid)
            if state is not None and state.get("number"):
                return str(state["number"])
            if state is None or time.monotonic() >= deadline:
                # Bought but no number yet: the lease stays unknown and is looked up again
                # (getState without tzid) until the number shows.
                raise PurchaseUnknown(
                    f"{NAME} getNum: operation {tzid} got no number within {self.number_wait_s}s",
                    provider=NAME,
                    action="getNum",
                    code="TZ_INPOOL",
                )
            time.sleep(self.number_poll_s)

    def _states(self, **params: str) -> list[dict]:
        try:
            data = self._call("getState", message_to_code="1", msg_list="0", clean="0", **params)
        except UnavailableError as exc:
            if exc.code in GONE:
                return []
            raise
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise self._http.malformed("getState", data, "not an array of operations")
        return data

    def _state(self, tzid: str) -> dict | None:
        return next((item for item in self._states(tzid=tzid) if str(item.get("tzid")) == tzid), None)

    def check(self, lease: Lease) -> CheckResult:
        state = self._state(lease.activation_id)
        if state is None:
            return Expired("ERROR_NO_OPERATIONS")
        return self._result(state)

    def check_open_activations(self) -> dict[str, CheckResult]:
        """Every open operation with its state, in one getState call without tzid."""
        return {str(item.get("tzid")): self._result(item) for item in self._states()}

    def _result(self, state: dict) -> CheckResult:
        status, msg = str(state.get("response")), state.get("msg")
        if msg and status in ("TZ_NUM_ANSWER", "TZ_OVER_OK"):
            return CodeReceived(code=str(msg), text=str(msg))
        if status in WAITING_STATES or status == "TZ_NUM_ANSWER":
            return Waiting(status)
        if status == "TZ_OVER_EMPTY":
            return Expired(status)
        if status == "TZ_OVER_OK":
            return Cancelled(status)
        raise MalformedReply(f"{NAME} getState: unknown state", provider=NAME, action="getState", body=status)

    def _close(self, lease: Lease) -> None:
        try:
            self._call("setOperationOk", tzid=lease.activation_id)
        except UnavailableError as exc:
            if exc.code in GONE:
                return  # already closed or expired
            if exc.code == "NO_COMPLETE_TZID":
                wait = close_retry_after(lease.bought_at)
                raise CancelTooEarly(
                    f"{NAME} setOperationOk: NO_COMPLETE_TZID (protective interval not over); retry in {wait:.0f} s",
                    provider=NAME,
                    action="setOperationOk",
                    code=exc.code,
                    retry_after_s=wait,
                ) from None
            raise

    def finish(self, lease: Lease) -> None:
        self._close(lease)

    def cancel(self, lease: Lease) -> None:
        # Closing is also finishing: never close an operation whose code arrived as if refunded.
        if isinstance(self.check(lease), CodeReceived):
            raise NotRefundable(
                f"{NAME} setOperationOk: the code already arrived; finish the operation instead",
                provider=NAME,
                action="setOperationOk",
                code="TZ_NUM_ANSWER",
            )
        self._close(lease)

    def request_another_code(self, lease: Lease) -> Lease:
        data = self._call("setOperationRevise", tzid=lease.activation_id)
        tzid = data.get("tzid") if isinstance(data, dict) else None
        if tzid is not None and str(tzid) != lease.activation_id:
            return replace(lease, activation_id=str(tzid))  # the next SMS comes on a new operation
        return lease

    def list_open_activations(self) -> list[OpenActivation]:
        """Every open operation (getState without tzid). The reply has no purchase time."""
        found = []
        for item in self._states():
            if str(item.get("response")).startswith("TZ_OVER"):
                continue  # closed
            number = str(item.get("number") or "")  # empty while TZ_INPOOL
            lease = Lease(
                provider=NAME,
                activation_id=str(item.get("tzid")),
                phone="+" + number.lstrip("+") if number else "",
                price=parse_decimal(item.get("sum", 0), provider=NAME, action="getState", body=str(item)),
                currency=self.currency,
                bought_at=datetime.now(UTC),  # not in the reply; the lease row keeps the real time
            )
            found.append(
                OpenActivation(
                    lease,
                    service=str(item.get("service", "")),
                    country=str(item.get("country", "")),
                    bought_at=None,
                )
            )
        return found

    def listing(self) -> Listing:
        """getNumbersStats?country=all: countries by calling code, each with the services sold there."""
        data = self._call("getNumbersStats", country="all", lang="en")
        rows = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise self._http.malformed("getNumbersStats", data)
        countries: list[Entry] = []
        services: dict[str, Entry] = {}
        sold: list[tuple[str, str]] = []
        for row in rows:
            if not isinstance(row, dict) or row.get("code") is None:
                continue
            countries.append(Entry(str(row["code"]), str(row.get("name") or "")))
            offers = row.get("services")
            for offer in offers.values() if isinstance(offers, dict) else []:
                if isinstance(offer, dict) and offer.get("slug"):
                    slug = str(offer["slug"])
                    services.setdefault(slug, Entry(slug, str(offer.get("service") or slug)))
                    sold.append((slug, str(row["code"])))
        return Listing(list(services.values()), countries, sold)


def close_retry_after(bought_at: datetime, now: datetime | None = None) -> float:
    """When to retry a close refused with NO_COMPLETE_TZID: at the end of the default protective
    interval, then backing off (15 s, 15 s, 30 s, 60 s ...) for services with a longer one."""
    age = ((now or datetime.now(UTC)) - bought_at).total_seconds()
    if age < PROTECTIVE_INTERVAL_S:
        return max(1.0, PROTECTIVE_INTERVAL_S - age)
    return min(CLOSE_BACKOFF_MAX_S, max(CLOSE_BACKOFF_MIN_S, age - PROTECTIVE_INTERVAL_S))
