"""SMS-MAN native "control" API client.

Quirks kept here: amounts are strings; numbers come without "+"; `error_msg` is a string or an
object such as {"token": "Wrong token!"}; cancel = set-status `reject` (refunded), finish =
set-status `close` (complete: the charge stands, so it is never a cancel fallback); `maxPrice` is
an integer (the max price rounded up; the listed price is checked against the exact max first)
sent with the account `currency`; no "another code" operation and no way to list open requests.
[inf] a rejected, closed or expired request answers get-sms with error_code `wrong_status`; a
`reject` refused with `wrong_status` is looked into: a code that arrived -> NotRefundable, a
request already over -> done, one still waiting -> CancelTooEarly (the lease stays cancel_pending
for reconciliation or a person).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

import httpx

from providers._http import NO_OFFER, Http, currency_of, parse_decimal, purchase_call, purchase_price
from providers.base import (
    Account,
    Cancelled,
    CheckResult,
    CodeReceived,
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
    UnavailableError,
    api_key_var,
)
from provisioner.settings.model import ProviderSettings, env_var_for

NAME = "sms_man"
WAIT = "wait_sms"
WRONG_STATUS = "wrong_status"
REJECT_RETRY_S = 60.0

_STOP_CODES = {"wrong_token", "balance"}  # bad key, insufficient funds


class SmsManProvider:
    """SMS-MAN over its native JSON API (`<base>/<action>?token=...`)."""

    def __init__(
        self, settings: ProviderSettings, client: httpx.Client | None = None, *, currency: str = "USD"
    ) -> None:
        self.name = NAME
        self.currency = currency
        self._base = settings.base_url.rstrip("/") + "/"
        self._http = Http(NAME, settings, client)

    def __repr__(self) -> str:
        return f"SmsManProvider(base_url={self._base!r})"

    def close(self) -> None:
        self._http.close()

    def _call(self, action: str, **params: str) -> dict:
        response = self._http.get(action, self._base + action, {"token": self._http.key, **params})
        if response.status_code == 400 and "application" in response.text.lower():
            raise StopError(
                f"{NAME} {action}: provider refused the application id: {response.text[:100]!r}",
                provider=NAME,
                action=action,
                code="bad_application",
                setting=env_var_for(("providers", NAME, "services")),
            )
        data = self._http.json(action, response)
        if isinstance(data, dict) and (data.get("success") is False or "error_code" in data):
            code, message = _error_of(data)
            if code == WAIT and action == "get-sms":
                return data
            raise self._error(action, code, message)
        if response.status_code >= 400 or not isinstance(data, dict):
            raise self._http.malformed(action, response)
        return data

    def _error(self, action: str, code: str, message: str) -> ProviderError:
        text = f"{NAME} {action}: {code}: {message}"
        if code in _STOP_CODES:
            return StopError(text, provider=NAME, action=action, code=code, setting=api_key_var(NAME))
        # no_numbers and codes we do not know: this provider cannot serve now, try the next one.
        return UnavailableError(text, provider=NAME, action=action, code=code)

    def balance(self) -> Decimal:
        return self.account().balance

    def account(self) -> Account:
        """get-balance; its currency where the reply names one."""
        data = self._call("get-balance")
        amount = parse_decimal(data.get("balance"), provider=NAME, action="get-balance", body=str(data))
        return Account(amount, currency_of(data.get("currency")))

    def price(self, service: str, country: str) -> PriceInfo:
        data = self._call("get-prices", country_id=country)
        offer = (data.get(country) or {}).get(service) if isinstance(data.get(country), dict) else None
        if not isinstance(offer, dict):
            raise UnavailableError(
                f"{NAME} get-prices: no offer for application {service} in country {country}",
                provider=NAME,
                action="get-prices",
                code=NO_OFFER,
            )
        cost = parse_decimal(offer.get("cost"), provider=NAME, action="get-prices", body=str(offer))
        return PriceInfo(price=cost, available=int(offer.get("count") or 0), currency=self.currency)

    def acquire(self, service: str, country: str, max_price: Decimal | None) -> Lease:
        price, source = purchase_price(
            lambda: self.price(service, country), max_price, provider=self.name, action="get-number"
        )
        params = {"country_id": country, "application_id": service, "currency": self.currency}
        if max_price is not None:
            params["maxPrice"] = str(int(max_price.to_integral_value(ROUND_CEILING)))
        with purchase_call(NAME, "get-number"):
            data = self._call("get-number", **params)
            request_id, number = data.get("request_id"), str(data.get("number") or "")
            if request_id is None or not number.lstrip("+").isdigit():
                raise self._http.malformed("get-number", data)
        return Lease(
            provider=NAME,
            activation_id=str(request_id),
            phone="+" + number.lstrip("+"),
            price=price,
            currency=self.currency,
            bought_at=datetime.now(UTC),
            price_source=source,
        )

    def check(self, lease: Lease) -> CheckResult:
        try:
            data = self._call("get-sms", request_id=lease.activation_id)
        except UnavailableError as exc:
            if exc.code == WRONG_STATUS:
                return Cancelled(WRONG_STATUS)
            raise
        if data.get("sms_code"):
            code = str(data["sms_code"])
            return CodeReceived(code=code, text=str(data.get("sms_text") or code))
        return Waiting(str(data.get("error_code") or WAIT))

    def check_open_activations(self) -> dict[str, CheckResult]:
        raise NotSupported(
            f"{NAME}: the API cannot list open activations with their codes",
            provider=NAME,
            action="check_open_activations",
        )

    def _set_status(self, lease: Lease, status: str) -> bool:
        """True when done, False when the provider says the request is no longer in that state."""
        try:
            self._call("set-status", request_id=lease.activation_id, status=status)
        except UnavailableError as exc:
            if exc.code == WRONG_STATUS:
                return False
            raise
        return True

    def finish(self, lease: Lease) -> None:
        self._set_status(lease, "close")

    def cancel(self, lease: Lease) -> None:
        if self._set_status(lease, "reject"):
            return
        state = self.check(lease)  # refused: find out why, never `close` (that charges)
        if isinstance(state, CodeReceived):
            raise NotRefundable(
                f"{NAME} set-status reject: the code already arrived; finish the request instead",
                provider=NAME,
                action="set-status",
                code=WRONG_STATUS,
            )
        if isinstance(state, Waiting):
            raise CancelTooEarly(
                f"{NAME} set-status reject: refused (wrong_status) while the request still waits",
                provider=NAME,
                action="set-status",
                code=WRONG_STATUS,
                retry_after_s=REJECT_RETRY_S,
            )
        # already rejected, closed or expired: nothing left to cancel

    def request_another_code(self, lease: Lease) -> Lease:
        raise NotSupported(
            f"{NAME}: the API has no 'send another code' status",
            provider=NAME,
            action="set-status",
        )

    def list_open_activations(self) -> list[OpenActivation]:
        raise NotSupported(f"{NAME}: the API cannot list open requests", provider=NAME, action="list")

    def listing(self) -> Listing:
        """`applications` and `countries`: objects keyed by id, each with a title and a code."""

        def entries(action: str) -> list[Entry]:
            return [
                Entry(str(row.get("id", key)), str(row.get("title") or ""), str(row.get("code") or ""))
                for key, row in self._call(action).items()
                if isinstance(row, dict)
            ]

        return Listing(entries("applications"), entries("countries"))


def _error_of(data: dict) -> tuple[str, str]:
    """(error_code, message) from either error shape: error_msg as a string or as an object."""
    raw = data.get("error_msg")
    message = "; ".join(f"{k}: {v}" for k, v in raw.items()) if isinstance(raw, dict) else str(raw or "")
    code = str(data.get("error_code") or "")
    if not code and isinstance(raw, dict) and "token" in raw:
        code = "wrong_token"
    return code or "unknown", message
