"""The one retry decision every task uses: retry only what is transient, with backoff and jitter."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff
from sqlalchemy.exc import OperationalError

import providers.errors
from provisioner.runtime import errors as runtime_errors

RETRIES = 3
RETRY_DELAYS = exponential_backoff(backoff_factor=1)  # 1 s, 2 s, 4 s
RETRY_JITTER = 0.5


def is_transient(exc: BaseException) -> bool:
    """A provider hiccup, a Docker engine 5xx, a dropped database connection: worth another try."""
    return (
        providers.errors.is_retryable(exc)
        or runtime_errors.is_retryable(exc)
        or isinstance(exc, OperationalError)
    )


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` for every task: a failed run is retried only for transient errors."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by result()
        return is_transient(exc)
    return False


RETRY_POLICY: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_on_transient,
}
