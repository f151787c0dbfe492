"""Errors raised by the SMS provider clients.

Every client raises only these; httpx exceptions are translated once, in `providers._http`.

    ProviderError            base: carries provider, action, code (keyword-only)
    ├── StopError            bad key, blocked account, no balance, bad service or country:
    │                        stop the run, the message names the setting to fix
    ├── UnavailableError     no numbers, concurrency limit, price above max: try the next provider
    ├── TransientError       HTTP 5xx/409/429, timeouts, connection errors, try-again codes: retry
    ├── CancelTooEarly       the provider's minimum time before cancel has not passed (or it refuses
    │                        the cancel for now): retry the cancel after `retry_after_s`, never the
    │                        purchase; meanwhile the lease is cancel_pending
    ├── NotRefundable        a cancel refused because the code already arrived (OTP_RECEIVED) or the
    │                        free cancellation window is over: the charge stands, finish the number
    │                        and record it as finished; never retried
    ├── MalformedReply       a reply we cannot parse: shows the (redacted, truncated) body
    ├── PurchaseUnknown      the purchase call got no clear answer (timeout, connection lost after
    │                        sending, HTTP 5xx, unparseable reply): a number may have been sold;
    │                        look it up, never buy again blind; not retried
    └── NotSupported         the protocol has no such operation

`is_retryable()` is the one function that decides whether a call is retried.
"""

from __future__ import annotations

from provisioner.settings.model import env_var_for

BODY_PREVIEW_CHARS = 200


def api_key_var(provider: str) -> str:
    """The environment variable holding a provider's API key."""
    return env_var_for(("providers", provider, "api_key"))


def base_url_var(provider: str) -> str:
    """The environment variable holding a provider's base URL."""
    return env_var_for(("providers", provider, "base_url"))


class ProviderError(Exception):
    """Base of every provider error; the message never contains a key."""

    def __init__(self, message: str, *, provider: str, action: str, code: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.action = action
        self.code = code


class StopError(ProviderError):
    """Retrying cannot help: a setting or the account must be fixed first."""

    def __init__(
        self, message: str, *, provider: str, action: str, code: str | None = None, setting: str | None = None
    ) -> None:
        if setting and setting not in message:
            message = f"{message}; check {setting}"
        super().__init__(message, provider=provider, action=action, code=code)
        self.setting = setting


class UnavailableError(ProviderError):
    """This provider cannot serve the request now; fall back to the next one."""


class TransientError(ProviderError):
    """A temporary failure; the same call may succeed if retried."""


class CancelTooEarly(ProviderError):
    """The activation may not be cancelled yet."""

    def __init__(
        self, message: str, *, provider: str, action: str, retry_after_s: float, code: str | None = None
    ) -> None:
        super().__init__(message, provider=provider, action=action, code=code)
        self.retry_after_s = retry_after_s


class NotRefundable(ProviderError):
    """The provider will not cancel (refund) this activation: its code already arrived, or the
    free cancellation window is over. Finish it and record it as finished; never retry the cancel."""


class MalformedReply(ProviderError):
    """The provider answered something we cannot parse."""

    def __init__(
        self, message: str, *, provider: str, action: str, body: str, code: str | None = None
    ) -> None:
        preview = body if len(body) <= BODY_PREVIEW_CHARS else body[:BODY_PREVIEW_CHARS] + "..."
        super().__init__(f"{message}: {preview!r}", provider=provider, action=action, code=code)
        self.body = preview


class PurchaseUnknown(ProviderError):
    """The purchase call got no clear answer: the provider may have sold a number."""


class NotSupported(ProviderError):
    """The provider's protocol lacks this operation."""


def is_retryable(exc: BaseException) -> bool:
    """True when the failed call should be retried as is (only transient errors)."""
    return isinstance(exc, TransientError)
