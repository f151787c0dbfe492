"""SMS-Activate protocol client (`<base>?api_key=...&action=...`), spoken by many providers.

The providers copying the protocol speak dialects of it; this client accepts all of them and
classifies every reply through one table (`TOKENS`), whichever way it arrives:
- plain text `TOKEN[:data]` with HTTP 200 (the original), or the same token as the body of an
  HTTP error status (Hero/Tiger-style: 401 BAD_KEY, 402 NO_BALANCE, 400 WRONG_MAX_PRICE/BAD_STATUS,
  403 CHANNELS_LIMIT/BANNED/EARLY_CANCEL_DENIED, 404 NO_ACTIVATION/NOT_FOUND, 409 OTP_RECEIVED/
  FREE_CANCELLATION_EXPIRED/ACTIVATION_NOT_ACTIVE), or JSON `{"title": TOKEN, "info": {...}}`;
  a token-less 401/402/403 stops and a token-less 409 is retried;
- getPrices as `{country:{service:{"cost","count"}}}`, `{country:{service:{"<price>": count}}}`
  (price map: the cheapest level in stock) or `{service:{"<country>": price}}` (no count);
  `{"status":"false","msg":...}` is a refused filter;
- getNumberV2 (JSON with `activationCost` and `currency`: the amount actually charged, which at
  auction-priced providers differs from the listed cost) where the provider has it, detected once
  (BAD_ACTION or a token-less 404), else getNumber with the listed cost recorded;
- ACCESS_CANCEL on getStatus (a cancelled activation at Tiger); BAD_ACTION inside an action every
  copy has is an internal error (retried), except on getBalance where it means a wrong base URL;
- free text ("The service is prohibited for sale by administration") refusing a purchase falls back.
An unknown id (NO_ACTIVATION, NOT_FOUND) means the number has ended: Expired on getStatus, done on
cancel or finish. A cancel refused because the code arrived raises NotRefundable (finish it).
Cancel is setStatus with the configured statuses in order (`PROVISIONER_PROVIDERS__SMS_ACTIVATE__
CANCEL_STATUSES`: 8, then the legacy -1; OnlineSim's copy refunds on 6, configured alone); 6 is
never sent as a fallback, since it finishes (charges) at most providers. A purchase call without a
clear answer raises PurchaseUnknown. getActiveActivations lists open activations (two reply shapes)
where the provider has it; support is detected once and remembered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from providers._http import NO_OFFER, Http, currency_of, parse_decimal, purchase_call, purchase_price, redact
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
    NotRefundable,
    NotSupported,
    ProviderError,
    StopError,
    TransientError,
    UnavailableError,
    api_key_var,
    base_url_var,
)
from provisioner.settings.model import ProviderSettings, env_var_for

NAME = "sms_activate"
CANCEL_STATUSES = ("8", "-1")  # the protocol's; PROVISIONER_PROVIDERS__SMS_ACTIVATE__CANCEL_STATUSES
CANCEL_REFUSED = "cancel_refused"
DEFAULT_CANCEL_WAIT_S = 120.0
LIST = "getActiveActivations"
LIST_PAGE = 100  # the most one provider returns per call
LIST_MAX_PAGES = 20

# What a reply token means, whatever the HTTP status and body shape it came in.
STOP, UNAVAILABLE, TRANSIENT, TOO_EARLY = "stop", "unavailable", "transient", "too_early"
GONE = "gone"  # unknown id: the number has ended
NOT_ACTIVE = "not_active"  # no longer active (finished, cancelled or expired)
REFUSED = "refused"  # this status change is not allowed in the activation's state
NOT_REFUNDABLE = "not_refundable"  # the code arrived, or free cancellation is over
BAD_ACTION = "bad_action"
TOKENS: dict[str, str] = {
    **dict.fromkeys(("BAD_KEY", "NO_KEY", "NO_BALANCE", "BANNED", "ACCOUNT_BLOCKED"), STOP),
    **dict.fromkeys(("BAD_SERVICE", "BAD_COUNTRY", "WRONG_SERVICE", "WRONG_COUNTRY"), STOP),
    **dict.fromkeys(("NO_NUMBERS", "NO_NUMBERS_AVAILABLE", "WRONG_MAX_PRICE", "CHANNELS_LIMIT"), UNAVAILABLE),
    **dict.fromkeys(("ERROR_SQL", "TRY_AGAIN_LATER", "INTERVAL_CONCURRENT_REQUESTS_ERROR"), TRANSIENT),
    **dict.fromkeys(("NO_ACTIVATION", "NOT_FOUND", "WRONG_ACTIVATION_ID"), GONE),
    **dict.fromkeys(("OTP_RECEIVED", "FREE_CANCELLATION_EXPIRED"), NOT_REFUNDABLE),
    "EARLY_CANCEL_DENIED": TOO_EARLY,
    "ACTIVATION_NOT_ACTIVE": NOT_ACTIVE,
    "BAD_STATUS": REFUSED,
    "BAD_ACTION": BAD_ACTION,
}
# The provider setting a stop token points at (default: the API key): a code outside its catalog.
_STOP_SETTING = {
    "BAD_SERVICE": "services",
    "WRONG_SERVICE": "services",
    "BAD_COUNTRY": "countries",
    "WRONG_COUNTRY": "countries",
}
# A body naming no known token: the HTTP status decides.
_STATUS_KIND = {401: STOP, 402: STOP, 403: STOP, 409: TRANSIENT}
_TOKEN = re.compile(r"^[A-Z][A-Z0-9_]*(?::.*)?$", re.DOTALL)
_FREE_TEXT = re.compile(r"^[^\W\d_][^<>{}\[\]]{2,300}$")  # a sentence, not markup or JSON


@dataclass(frozen=True)
class Reply:
    """One decoded handler_api reply: its HTTP status, token (or ""), data after the colon, JSON."""

    status: int
    text: str
    token: str = ""
    data: str = ""
    info: dict = field(default_factory=dict)
    json: object = None

    @property
    def kind(self) -> str | None:
        if self.token in TOKENS:
            return TOKENS[self.token]
        return _STATUS_KIND.get(self.status) if self.status >= 400 else None

    @property
    def ok(self) -> bool:
        return self.status < 400


def decode(response: httpx.Response) -> Reply:
    text = response.text.strip()
    status = response.status_code
    if text[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except ValueError:
            return Reply(status, text)
        if isinstance(data, dict) and isinstance(data.get("title"), str):
            info = data.get("info") if isinstance(data.get("info"), dict) else {}
            return Reply(status, text, data["title"], "", info, data)
        return Reply(status, text, json=data)
    if _TOKEN.match(text):
        token, _, data = text.partition(":")
        return Reply(status, text, token, data)
    return Reply(status, text)


class SmsActivateProvider:
    """Any provider speaking the SMS-Activate handler_api protocol; the base URL is the handler."""

    def __init__(
        self,
        settings: ProviderSettings,
        client: httpx.Client | None = None,
        *,
        name: str = NAME,
        currency: str = "RUB",
    ) -> None:
        self.name = name
        self.currency = currency
        self._url = settings.base_url
        self._http = Http(name, settings, client)
        self._number_v2: bool | None = None  # None: not tried yet
        self.cancel_statuses = tuple(getattr(settings, "cancel_statuses", CANCEL_STATUSES))
        self._can_list: bool | None = None  # getActiveActivations support, learned on first use

    def __repr__(self) -> str:
        return f"SmsActivateProvider(name={self.name!r}, base_url={self._url!r})"

    def close(self) -> None:
        self._http.close()

    def _call(self, action: str, **params: str) -> Reply:
        query = {"api_key": self._http.key, "action": action, **params}
        passthrough = frozenset(range(400, 500)) - {429}  # 4xx carry tokens; 429 and 5xx are retried
        return decode(self._http.get(action, self._url, query, passthrough=passthrough))

    def _error(self, action: str, reply: Reply, *, purchase: bool = False) -> ProviderError:
        """The error a reply that is not the expected answer stands for."""
        kind, token = reply.kind, reply.token or f"http_{reply.status}"
        shown = f"HTTP {reply.status}: " if not reply.ok else ""
        message = f"{self.name} {action}: {shown}{redact(reply.text)[:100]}"
        context = {"provider": self.name, "action": action, "code": token}
        if kind == BAD_ACTION:
            if action == "getBalance":  # the one action every copy has: the URL is not a handler
                return StopError(message, setting=base_url_var(self.name), **context)
            kind = TRANSIENT  # inside a known action: the provider's internal error
        if kind == STOP:
            field = _STOP_SETTING.get(token)
            setting = env_var_for(("providers", self.name, field)) if field else api_key_var(self.name)
            return StopError(message, setting=setting, **context)
        if kind == TRANSIENT:
            return TransientError(message, **context)
        if kind == TOO_EARLY:
            wait = reply.info.get("minActivationTime", reply.data)
            wait_s = float(wait) if _is_number(wait) else DEFAULT_CANCEL_WAIT_S
            return CancelTooEarly(message, retry_after_s=wait_s, **context)
        if kind == NOT_REFUNDABLE:
            return NotRefundable(message, **context)
        if kind in (UNAVAILABLE, GONE, REFUSED, NOT_ACTIVE):
            return UnavailableError(message, **context)
        if purchase and (reply.token or _FREE_TEXT.match(reply.text)):
            return UnavailableError(message, **context)  # a refusal we have no entry for
        return self._http.malformed(action, f"HTTP {reply.status}: {reply.text}")

    def balance(self) -> Decimal:
        return self.account().balance

    def account(self) -> Account:
        """getBalance (`ACCESS_BALANCE:<amount>`): the protocol's balance names no currency; the
        account's shows in getNumberV2 replies (checked on each purchase)."""
        reply = self._call("getBalance")
        if not (reply.ok and reply.token == "ACCESS_BALANCE"):
            raise self._error("getBalance", reply)
        amount = parse_decimal(reply.data, provider=self.name, action="getBalance", body=reply.text)
        return Account(amount, None)

    def price(self, service: str, country: str) -> PriceInfo:
        reply = self._call("getPrices", country=country, service=service)
        data = reply.json
        if not reply.ok or not isinstance(data, dict):
            raise self._error("getPrices", reply)
        if str(data.get("status")).lower() in ("false", "error"):
            why = str(data.get("msg") or data.get("message") or "filter refused")
            field = "countries" if "country" in why.lower() else "services"
            raise StopError(
                f"{self.name} getPrices: {why[:100]} (service {service}, country {country})",
                provider=self.name,
                action="getPrices",
                code="status_false",
                setting=env_var_for(("providers", self.name, field)),
            )
        info = self._offer(data, service, country)
        if info is None:
            raise UnavailableError(
                f"{self.name} getPrices: no offer for {service} in country {country}",
                provider=self.name,
                action="getPrices",
                code=NO_OFFER,
            )
        return info

    def _offer(self, data: dict, service: str, country: str) -> PriceInfo | None:
        """The offer in any of the three price shapes, or None when the reply lists none."""
        amount = lambda value: parse_decimal(value, provider=self.name, action="getPrices", body=str(data))  # noqa: E731
        by_country = data.get(country)
        offer = by_country.get(service) if isinstance(by_country, dict) else None
        if isinstance(offer, dict) and "cost" in offer:
            return PriceInfo(amount(offer["cost"]), int(offer.get("count") or 0), self.currency)
        if isinstance(offer, dict) and offer:  # {"<price>": count, ...}
            levels = sorted((amount(price), int(count or 0)) for price, count in offer.items())
            in_stock = [price for price, count in levels if count > 0]
            cheapest = in_stock[0] if in_stock else levels[0][0]
            return PriceInfo(cheapest, sum(count for _, count in levels), self.currency)
        by_service = data.get(service)
        price = by_service.get(country) if isinstance(by_service, dict) else None
        if isinstance(price, int | float | str) and _is_number(price):
            return PriceInfo(amount(price), None, self.currency)
        return None

    def acquire(self, service: str, country: str, max_price: Decimal | None) -> Lease:
        listed, source = purchase_price(
            lambda: self.price(service, country), max_price, provider=self.name, action="getNumber"
        )
        params = {"service": service, "country": country}
        if max_price is not None:
            params["maxPrice"] = str(max_price)
        with purchase_call(self.name, "getNumber"):  # an unclear answer: maybe sold (PurchaseUnknown)
            if self._number_v2 is not False:
                lease = self._acquire_v2(params)
                if lease is not None:
                    return lease
            reply = self._call("getNumber", **params)
            if not (reply.ok and reply.token == "ACCESS_NUMBER"):
                raise self._error("getNumber", reply, purchase=True)
            activation_id, _, phone = reply.data.partition(":")
            return self._lease("getNumber", reply.text, activation_id, phone, listed, self.currency, source)

    def _acquire_v2(self, params: dict[str, str]) -> Lease | None:
        """Buy with getNumberV2 (it answers the amount charged); None when the provider lacks it."""
        reply = self._call("getNumberV2", **params)
        if reply.token == "BAD_ACTION" or (reply.status == 404 and reply.kind is None):
            self._number_v2 = False
            return None
        data = reply.json
        if not reply.ok or not isinstance(data, dict):
            raise self._error("getNumberV2", reply, purchase=True)
        self._number_v2 = True
        cost = parse_decimal(
            data.get("activationCost"), provider=self.name, action="getNumberV2", body=reply.text
        )
        currency = currency_of(data.get("currency")) or self.currency
        return self._lease(
            "getNumberV2", reply.text, str(data.get("activationId") or ""), str(data.get("phoneNumber") or ""),
            cost, currency, "reply",
        )  # fmt: skip

    def _lease(
        self,
        action: str,
        body: str,
        activation_id: str,
        phone: str,
        price: Decimal,
        currency: str,
        price_source: str,
    ) -> Lease:
        if not activation_id or not phone.lstrip("+").isdigit():
            raise self._http.malformed(action, body)
        return Lease(
            provider=self.name,
            activation_id=activation_id,
            phone="+" + phone.lstrip("+"),
            price=price,
            currency=currency,
            bought_at=datetime.now(UTC),
            price_source=price_source,
        )

    def check(self, lease: Lease) -> CheckResult:
        reply = self._call("getStatus", id=lease.activation_id)
        token = reply.token
        if reply.ok and token == "STATUS_OK":
            return CodeReceived(code=reply.data, text=reply.data)
        if reply.ok and token in ("STATUS_WAIT_CODE", "STATUS_WAIT_RETRY", "STATUS_WAIT_RESEND"):
            return Waiting(token)
        if reply.ok and token in ("STATUS_CANCEL", "ACCESS_CANCEL"):
            return Cancelled(token)
        if reply.kind in (GONE, NOT_ACTIVE):
            return Expired(token)
        raise self._error("getStatus", reply)

    def check_open_activations(self) -> dict[str, CheckResult]:
        """getActiveActivations, paged, where the provider has it (NotSupported otherwise): each
        open activation with its latest code (smsCode is a string or a list) or still waiting."""
        if self._can_list is False:
            raise NotSupported(
                f"{self.name}: getActiveActivations is not supported", provider=self.name, action=LIST
            )
        results: dict[str, CheckResult] = {}
        for page in range(LIST_MAX_PAGES):
            rows = self._activation_rows(self._call(LIST, start=str(page * LIST_PAGE), limit=str(LIST_PAGE)))
            for row in rows:
                code, text = _latest(row.get("smsCode")), _latest(row.get("smsText"))
                status = f"activationStatus {row.get('activationStatus')}"
                results[str(row.get("activationId") or "")] = (
                    CodeReceived(code=code, text=text or code) if code else Waiting(status)
                )
            if len(rows) < LIST_PAGE:
                break
        return results

    def _set_status(self, lease: Lease, status: str) -> Reply:
        return self._call("setStatus", id=lease.activation_id, status=status)

    def finish(self, lease: Lease) -> None:
        reply = self._set_status(lease, "6")
        if reply.ok and reply.token == "ACCESS_ACTIVATION":
            return
        if reply.kind in (GONE, NOT_ACTIVE):
            return  # an unknown or ended activation has nothing left to finish
        if reply.kind == REFUSED and isinstance(self.check(lease), CodeReceived):
            return  # 6 refused while the code shows: finished already
        raise self._error("setStatus", reply)

    def cancel(self, lease: Lease) -> None:
        # The configured statuses in order (8, then -1 by default); a refusal (BAD_STATUS,
        # ACTIVATION_NOT_ACTIVE) is looked into once: a code that arrived makes it NotRefundable,
        # an activation already over is done, else the next status. 6 is sent only when configured
        # as the cancel (OnlineSim's copy refunds on it), never as a fallback: elsewhere it charges.
        looked = False
        for status in self.cancel_statuses:
            expected = "ACCESS_ACTIVATION" if status == "6" else "ACCESS_CANCEL"
            reply = self._set_status(lease, status)
            if (reply.ok and reply.token == expected) or reply.kind == GONE:
                return  # GONE: already cancelled, expired or never existed
            if reply.kind not in (REFUSED, NOT_ACTIVE):
                raise self._error("setStatus", reply)
            if not looked:
                looked = True
                state = self.check(lease)
                if isinstance(state, CodeReceived):
                    raise NotRefundable(
                        f"{self.name} setStatus: the code already arrived; finish the number instead",
                        provider=self.name,
                        action="setStatus",
                        code=reply.token or "STATUS_OK",
                    )
                if not isinstance(state, Waiting):
                    return  # already over (cancelled, expired): nothing left to cancel
        raise UnavailableError(
            f"{self.name} setStatus: every cancel status ({', '.join(self.cancel_statuses)}) was refused",
            provider=self.name,
            action="setStatus",
            code=CANCEL_REFUSED,
        )

    def request_another_code(self, lease: Lease) -> Lease:
        reply = self._set_status(lease, "3")
        if not (reply.ok and reply.token == "ACCESS_RETRY_GET"):
            raise self._error("setStatus", reply)
        return lease

    def list_open_activations(self) -> list[OpenActivation]:
        """getActiveActivations, paged. Many providers speaking the protocol lack it (BAD_ACTION,
        HTTP 404): that is detected once and remembered (NotSupported)."""
        if self._can_list is False:
            raise NotSupported(
                f"{self.name}: getActiveActivations is not supported", provider=self.name, action=LIST
            )
        found: list[OpenActivation] = []
        for page in range(LIST_MAX_PAGES):
            rows = self._activation_rows(self._call(LIST, start=str(page * LIST_PAGE), limit=str(LIST_PAGE)))
            found += [self._open_activation(row) for row in rows]
            if len(rows) < LIST_PAGE:
                break
        return found

    def _activation_rows(self, reply: Reply) -> list[dict]:
        data = reply.json
        if reply.token == "BAD_ACTION" or (reply.status == 404 and reply.kind is None):
            self._can_list = False
            raise NotSupported(
                f"{self.name}: getActiveActivations is not supported", provider=self.name, action=LIST
            )
        if reply.token in ("NO_ACTIVATIONS", "NO_ACTIVATION") or (
            isinstance(data, dict) and "NO_ACTIVATIONS" in str(data.get("error") or data.get("message") or "")
        ):
            self._can_list = True
            return []
        if reply.ok and isinstance(data, dict) and data.get("status") == "success":
            # Two shapes: the list under activeActivations, or under data (activeActivations a count).
            rows = data.get("activeActivations")
            if not isinstance(rows, list):
                rows = data.get("data")
            if isinstance(rows, list) and all(isinstance(row, dict) for row in rows):
                self._can_list = True
                return rows
        if reply.kind is not None:
            raise self._error(LIST, reply)
        raise self._http.malformed(LIST, f"HTTP {reply.status}: {reply.text}", "not a list of activations")

    def _open_activation(self, row: dict) -> OpenActivation:
        body = redact(str(row))
        phone = str(row.get("phoneNumber") or "")
        lease = Lease(
            provider=self.name,
            activation_id=str(row.get("activationId") or ""),
            phone="+" + phone.lstrip("+") if phone else "",
            price=parse_decimal(row.get("activationCost", 0), provider=self.name, action=LIST, body=body),
            currency=self.currency,
            bought_at=datetime.now(UTC),
        )
        return OpenActivation(
            lease,
            service=str(row.get("serviceCode") or ""),
            country=str(row.get("countryCode") if row.get("countryCode") is not None else ""),
            bought_at=_activation_time(row.get("activationTime")),
        )

    def _json(self, action: str) -> object:
        reply = self._call(action)
        if not reply.ok or reply.json is None:
            raise self._error(action, reply)
        return reply.json

    def listing(self) -> Listing:
        """getServicesList ({"services": [{code, name}]}) and getCountries ({number: {id, eng}})."""
        data = self._json("getServicesList")
        rows = data.get("services") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise self._http.malformed("getServicesList", data)
        services = [
            Entry(str(r["code"]), str(r.get("name") or ""))
            for r in rows
            if isinstance(r, dict) and r.get("code")
        ]
        data = self._json("getCountries")
        rows = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise self._http.malformed("getCountries", data)
        countries = [
            Entry(str(r["id"]), str(r.get("eng") or r.get("name") or ""))
            for r in rows
            if isinstance(r, dict) and r.get("id") is not None
        ]
        return Listing(services, countries)


def _latest(value: object) -> str | None:
    """The newest of a list of codes or texts (or the one given); None when empty."""
    if isinstance(value, list):
        value = value[-1] if value else None
    return str(value) if value not in (None, "", False) else None


def _activation_time(value: object) -> datetime | None:
    """`YYYY-MM-DD HH:MM:SS` as UTC (the lists carry no zone); None when absent or unreadable."""
    try:
        return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True
