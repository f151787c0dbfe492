"""The HTTP boundary shared by the provider clients.

The one place where httpx exceptions and HTTP error statuses become `providers.errors`, and where
keys are scrubbed: every registered key is replaced by "***" in error text and in the request
lines httpx and httpcore log (a filter on those loggers), so a key never reaches a log or a message.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, quote_plus

import httpx

from providers.base import PriceInfo
from providers.errors import (
    MalformedReply,
    ProviderError,
    PurchaseUnknown,
    StopError,
    TransientError,
    UnavailableError,
    api_key_var,
)
from provisioner.settings.model import ProviderSettings

REDACTED = "***"
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(secret: str) -> None:
    """Make `redact()` and the httpx log filter hide this value (and its URL-encoded forms)."""
    if not secret:
        return
    with _secrets_lock:
        _secrets.update({secret, quote(secret, safe=""), quote_plus(secret)})


def redact(text: str) -> str:
    """`text` with every registered secret replaced by '***'."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = _RedactFilter()
for _name in ("httpx", "httpcore"):
    if _FILTER not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_FILTER)


def parse_decimal(value: object, *, provider: str, action: str, body: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise MalformedReply("not an amount", provider=provider, action=action, body=body) from None


ISO_CURRENCIES = {"643": "RUB", "840": "USD", "978": "EUR"}  # ISO 4217 numbers seen in replies


def currency_of(value: object) -> str | None:
    """A currency as a reply names it (an ISO 4217 code or number), upper case; None when absent."""
    if value in (None, "", False):
        return None
    text = str(value).strip().upper()
    return ISO_CURRENCIES.get(text, text)[:8]


class Http:
    """One provider's long-lived httpx.Client, explicit timeouts and error translation."""

    def __init__(self, provider: str, settings: ProviderSettings, client: httpx.Client | None) -> None:
        if not settings.configured:
            raise StopError(
                f"{provider}: no API key configured",
                provider=provider,
                action="configure",
                setting=api_key_var(provider),
            )
        assert settings.api_key is not None
        self.provider = provider
        self.key = settings.api_key.get_secret_value()
        register_secret(self.key)
        self.timeout = httpx.Timeout(settings.timeout_s)
        self._owns_client = client is None
        self.client = client if client is not None else httpx.Client(timeout=self.timeout)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def get(
        self,
        action: str,
        url: str,
        params: Mapping[str, str],
        *,
        headers: Mapping[str, str] | None = None,
        passthrough: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """GET `url`; statuses that mean "try again" raise TransientError unless in `passthrough`."""
        try:
            response = self.client.get(url, params=dict(params), headers=headers, timeout=self.timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TransientError(  # nothing was sent: the provider did nothing
                f"{self.provider} {action}: cannot connect: {type(exc).__name__}",
                provider=self.provider,
                action=action,
                code=CONNECT,
            ) from exc
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"{self.provider} {action}: no reply within {self.timeout.read}s",
                provider=self.provider,
                action=action,
                code="timeout",
            ) from exc
        except httpx.HTTPError as exc:
            raise TransientError(
                f"{self.provider} {action}: {type(exc).__name__}: {redact(str(exc))}",
                provider=self.provider,
                action=action,
                code="transport",
            ) from exc
        status = response.status_code
        if status in passthrough:
            return response
        if status >= 500 or status in (409, 429):
            raise TransientError(
                f"{self.provider} {action}: HTTP {status}: {redact(response.text[:200])!r}",
                provider=self.provider,
                action=action,
                code=f"http_{status}",
            )
        return response

    def malformed(self, action: str, body: object, why: str = "unexpected reply") -> MalformedReply:
        """A MalformedReply showing `body` (a response or any value), key redacted."""
        if isinstance(body, httpx.Response):
            why, body = f"{why} (HTTP {body.status_code})", body.text
        return MalformedReply(
            f"{self.provider} {action}: {why}", provider=self.provider, action=action, body=redact(str(body))
        )

    def json(self, action: str, response: httpx.Response) -> object:
        try:
            return response.json()
        except ValueError:
            raise self.malformed(action, response, "not JSON") from None


NO_OFFER = "no_offer"
CONNECT = "connect"


def _unclear(exc: ProviderError) -> bool:
    """A failed call whose effect at the provider is unknown: it may have happened."""
    if isinstance(exc, MalformedReply):
        return True
    code = exc.code or ""
    return isinstance(exc, TransientError) and (code in ("timeout", "transport") or code.startswith("http_5"))


@contextlib.contextmanager
def purchase_call(provider: str, action: str) -> Iterator[None]:
    """Wrap exactly the call that buys: an unclear answer becomes PurchaseUnknown (a number may
    have been sold); clear refusals (no numbers, bad key, rate limits, connect errors) pass as is."""
    try:
        yield
    except (TransientError, MalformedReply) as exc:
        if not _unclear(exc):
            raise
        raise PurchaseUnknown(
            f"{provider} {action}: outcome unknown ({exc})", provider=provider, action=action, code=exc.code
        ) from exc


UNQUOTED = "unquoted"


def purchase_price(
    quote: Callable[[], PriceInfo],
    max_price: Decimal | None,
    *,
    provider: str,
    action: str,
    server_side_cap: bool = True,
    allow_unquoted: bool = False,
) -> tuple[Decimal, str]:
    """The price to record for a purchase about to be made and where it comes from ("quote", or
    "cap" without one); refuses one out of stock or above max.

    An offer missing from the price list does not refuse where the provider enforces the cap
    itself (`server_side_cap`): the purchase reply then says why (a bad service is a StopError, no
    numbers an UnavailableError). If it succeeds anyway, the recorded price is `max_price` (the
    most it can have cost) or 0 when unknown. Where nothing would enforce the cap (OnlineSim), a
    capped purchase without a quote is refused unless `allow_unquoted`
    (PROVISIONER_SPEND__ALLOW_UNQUOTED).
    """
    try:
        info = quote()
    except UnavailableError as exc:
        if exc.code != NO_OFFER:
            raise
        if max_price is not None and not server_side_cap and not allow_unquoted:
            raise UnavailableError(
                f"{provider} {action}: no quote for the offer and {provider} cannot enforce the cap "
                f"{max_price} itself: not bought (PROVISIONER_SPEND__ALLOW_UNQUOTED=true buys anyway)",
                provider=provider,
                action=action,
                code=UNQUOTED,
            ) from exc
        return (max_price if max_price is not None else Decimal(0)), "cap"
    if info.available is not None and info.available <= 0:
        raise UnavailableError(
            f"{provider} {action}: no numbers", provider=provider, action=action, code="no_numbers"
        )
    if max_price is not None and info.price > max_price:
        raise UnavailableError(
            f"{provider} {action}: price {info.price} above max {max_price}",
            provider=provider,
            action=action,
            code="price_above_max",
        )
    return info.price, "quote"
