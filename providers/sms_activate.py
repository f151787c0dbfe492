"""SMS-Activate protocol client (`<base>?api_key=...&action=...`), spoken by many providers.

Quirks kept here: plain-text replies `CODE[:data]` (prices are JSON); cancel is setStatus 8, and a
provider that refuses 8 with BAD_STATUS gets the legacy -1, then 6 (what OnlineSim's copy and one
public client use); the status that worked is remembered. EARLY_CANCEL_DENIED comes as plain text
or as HTTP 409 JSON {"title":"EARLY_CANCEL_DENIED","info":{"minActivationTime":120}}.
NO_ACTIVATION on cancel means already cancelled. No way to list open activations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx

from providers._http import NO_OFFER, Http, parse_decimal, purchase_price, redact
from providers.base import Cancelled, CheckResult, CodeReceived, Expired, Lease, PriceInfo, Waiting
from providers.catalog import Entry, Listing
from providers.errors import (
    CancelTooEarly,
    ProviderError,
    StopError,
    TransientError,
    UnavailableError,
    api_key_var,
    base_url_var,
)
from settings.model import ProviderSettings, env_var_for

NAME = "sms_activate"
CANCEL_STATUSES = ("8", "-1", "6")
DEFAULT_CANCEL_WAIT_S = 120.0

_STOP = {
    "BAD_KEY": api_key_var,
    "NO_BALANCE": api_key_var,
    "BANNED": api_key_var,
    "ACCOUNT_BLOCKED": api_key_var,
    "BAD_ACTION": base_url_var,
    "BAD_SERVICE": lambda name: env_var_for(("providers", name, "services")),
    "BAD_COUNTRY": lambda name: env_var_for(("providers", name, "countries")),
}
_UNAVAILABLE = {"NO_NUMBERS", "WRONG_MAX_PRICE", "CHANNELS_LIMIT", "NO_NUMBERS_AVAILABLE"}
_TRANSIENT = {"ERROR_SQL", "TRY_AGAIN_LATER", "INTERVAL_CONCURRENT_REQUESTS_ERROR"}


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

    def __repr__(self) -> str:
        return f"SmsActivateProvider(name={self.name!r}, base_url={self._url!r})"

    def close(self) -> None:
        self._http.close()

    def _raw(self, action: str, passthrough: frozenset[int] = frozenset(), **params: str) -> httpx.Response:
        query = {"api_key": self._http.key, "action": action, **params}
        return self._http.get(action, self._url, query, passthrough=passthrough)

    def _text(self, action: str, **params: str) -> str:
        response = self._raw(action, **params)
        text = response.text.strip()
        code = text.split(":", 1)[0]
        if response.status_code >= 400 or not code or not code.replace("_", "").isalnum():
            raise self._http.malformed(action, response)
        return text

    def _error(self, action: str, text: str) -> ProviderError:
        code, _, data = text.partition(":")
        message = f"{self.name} {action}: {redact(text)[:100]}"
        if code in _STOP:
            setting = _STOP[code](self.name)
            return StopError(message, provider=self.name, action=action, code=code, setting=setting)
        if code in _TRANSIENT:
            return TransientError(message, provider=self.name, action=action, code=code)
        if code == "EARLY_CANCEL_DENIED":
            wait = float(data) if _is_number(data) else DEFAULT_CANCEL_WAIT_S
            return CancelTooEarly(message, provider=self.name, action=action, code=code, retry_after_s=wait)
        if code in _UNAVAILABLE or code.isupper():
            return UnavailableError(message, provider=self.name, action=action, code=code)
        return self._http.malformed(action, text)

    def balance(self) -> Decimal:
        text = self._text("getBalance")
        code, _, amount = text.partition(":")
        if code != "ACCESS_BALANCE":
            raise self._error("getBalance", text)
        return parse_decimal(amount, provider=self.name, action="getBalance", body=text)

    def price(self, service: str, country: str) -> PriceInfo:
        response = self._raw("getPrices", country=country, service=service)
        try:
            data = response.json()
        except ValueError:
            raise self._error("getPrices", response.text.strip()) from None
        offer = data.get(country, {}).get(service) if isinstance(data, dict) else None
        if not isinstance(offer, dict):
            raise UnavailableError(
                f"{self.name} getPrices: no offer for {service} in country {country}",
                provider=self.name,
                action="getPrices",
                code=NO_OFFER,
            )
        cost = parse_decimal(offer.get("cost"), provider=self.name, action="getPrices", body=str(offer))
        return PriceInfo(price=cost, available=int(offer.get("count") or 0), currency=self.currency)

    def acquire(self, service: str, country: str, max_price: Decimal | None) -> Lease:
        price = purchase_price(
            lambda: self.price(service, country), max_price, provider=self.name, action="getNumber"
        )
        params = {"service": service, "country": country}
        if max_price is not None:
            params["maxPrice"] = str(max_price)
        text = self._text("getNumber", **params)
        parts = text.split(":")
        if parts[0] != "ACCESS_NUMBER":
            raise self._error("getNumber", text)
        if len(parts) != 3 or not parts[2].lstrip("+").isdigit():
            raise self._http.malformed("getNumber", text)
        return Lease(
            provider=self.name,
            activation_id=parts[1],
            phone="+" + parts[2].lstrip("+"),
            price=price,
            currency=self.currency,
            bought_at=datetime.now(UTC),
        )

    def check(self, lease: Lease) -> CheckResult:
        text = self._text("getStatus", id=lease.activation_id)
        code, _, data = text.partition(":")
        if code == "STATUS_OK":
            return CodeReceived(code=data, text=data)
        if code in ("STATUS_WAIT_CODE", "STATUS_WAIT_RETRY", "STATUS_WAIT_RESEND"):
            return Waiting(code)
        if code == "STATUS_CANCEL":
            return Cancelled(code)
        if code == "NO_ACTIVATION":
            return Expired(code)
        raise self._error("getStatus", text)

    def _set_status(self, lease: Lease, status: str, expected: str) -> str:
        """The reply code of setStatus; raises for anything but `expected`, BAD_STATUS, NO_ACTIVATION."""
        response = self._raw("setStatus", frozenset({409}), id=lease.activation_id, status=status)
        if response.status_code == 409:
            raise self._conflict(response)
        text = response.text.strip()
        code = text.split(":", 1)[0]
        if response.status_code < 400 and code in (expected, "BAD_STATUS", "NO_ACTIVATION"):
            return code
        if response.status_code >= 400:
            raise self._http.malformed("setStatus", response)
        raise self._error("setStatus", text)

    def _conflict(self, response: httpx.Response) -> ProviderError:
        """HTTP 409: early-cancel denial (JSON) or a generic, retryable conflict."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("title") == "EARLY_CANCEL_DENIED":
            info = data.get("info") if isinstance(data.get("info"), dict) else {}
            wait = info.get("minActivationTime")
            return self._error("setStatus", f"EARLY_CANCEL_DENIED:{wait if _is_number(wait) else ''}")
        return TransientError(
            f"{self.name} setStatus: HTTP 409: {redact(response.text[:200])!r}",
            provider=self.name,
            action="setStatus",
            code="http_409",
        )

    def finish(self, lease: Lease) -> None:
        code = self._set_status(lease, "6", "ACCESS_ACTIVATION")
        if code == "BAD_STATUS":
            raise self._error("setStatus", "BAD_STATUS")

    def cancel(self, lease: Lease) -> None:
        # 8 first; BAD_STATUS means this provider (or this activation's state) refuses it.
        for status in CANCEL_STATUSES:
            expected = "ACCESS_ACTIVATION" if status == "6" else "ACCESS_CANCEL"
            if self._set_status(lease, status, expected) in (expected, "NO_ACTIVATION"):
                return  # NO_ACTIVATION: already cancelled, expired or never existed
        if not isinstance(self.check(lease), Waiting):
            return  # already over (finished, cancelled): nothing left to cancel
        raise self._error("setStatus", "BAD_STATUS")

    def request_another_code(self, lease: Lease) -> None:
        code = self._set_status(lease, "3", "ACCESS_RETRY_GET")
        if code != "ACCESS_RETRY_GET":
            raise self._error("setStatus", code)

    def find_open_activations(self) -> list[Lease] | None:
        return None

    def _json(self, action: str) -> object:
        response = self._raw(action)
        try:
            return response.json()
        except ValueError:
            raise self._error(action, response.text.strip()) from None

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


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True
