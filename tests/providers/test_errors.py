"""The error tree and the one retry decision."""

from __future__ import annotations

import httpx
import pytest

from providers.errors import (
    CancelTooEarly,
    MalformedReply,
    NotSupported,
    ProviderError,
    StopError,
    TransientError,
    UnavailableError,
    is_retryable,
)

CONTEXT = {"provider": "sms_man", "action": "get-number"}


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (TransientError("x", **CONTEXT), True),
        (StopError("x", **CONTEXT), False),
        (UnavailableError("x", **CONTEXT), False),
        (CancelTooEarly("x", retry_after_s=5, **CONTEXT), False),
        (MalformedReply("x", body="", **CONTEXT), False),
        (NotSupported("x", **CONTEXT), False),
        (httpx.ReadTimeout("raw"), False),  # foreign errors are translated first, never retried raw
        (ValueError(), False),
    ],
)
def test_only_transient_errors_are_retried(error, retryable):
    assert is_retryable(error) is retryable


def test_context_is_keyword_only_and_shared():
    error = StopError(
        "sms_man get-number: wrong_token", setting="PROVISIONER_X", code="wrong_token", **CONTEXT
    )
    assert isinstance(error, ProviderError)
    assert (error.provider, error.action, error.code) == ("sms_man", "get-number", "wrong_token")
    assert str(error).endswith("check PROVISIONER_X")
    with pytest.raises(TypeError):
        TransientError("x", "sms_man", "get-number")  # type: ignore[misc]


def test_malformed_reply_truncates_the_body():
    error = MalformedReply("sms_man get-sms: not JSON", body="<" * 1000, **CONTEXT)
    assert len(str(error)) < 300 and error.body.endswith("...")
