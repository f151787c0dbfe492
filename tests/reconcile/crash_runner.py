"""Run one provision and SIGKILL this process right after a chosen side-effecting step.

    python -m tests.reconcile.crash_runner <crash point> <provider> <session id>

The environment carries the settings (PROVISIONER_*) and PREFECT_API_URL. The kill is wired in
here by wrapping the step's function; production code has no crash hooks. Each wrapper kills
after the step's database commit (or, for "lease_pending", right before the purchase call).
"""

from __future__ import annotations

import functools
import os
import signal
import sys

CRASH_POINTS = (
    "session_created",  # the session row is committed (state requested)
    "lease_pending",  # the lease row is committed as pending; the purchase call is not made
    "purchase_made",  # the provider sold the number; its reply never reached the database
    "lease_bought",  # the lease is completed in the database (state number_acquired)
    "device_started",  # the device container runs (the stream may still be starting)
    "stream_started",  # the stream container runs
    "code_received",  # the code is recorded; the number is not finished yet
)


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def after(owner: object, name: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        die()
        return result

    setattr(owner, name, wrapper)


def before(owner: object, name: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        die()
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def arm(point: str) -> None:
    import flows.provision
    import provisioner.steps.codes
    import provisioner.steps.numbers
    from providers.onlinesim import OnlineSimProvider
    from providers.sms_activate import SmsActivateProvider
    from providers.sms_man import SmsManProvider
    from provisioner.runtime.containers import ContainerRuntime

    providers = (OnlineSimProvider, SmsActivateProvider, SmsManProvider)
    if point == "session_created":
        after(flows.provision, "adopt_session")  # the task returns after its transaction commits
    elif point == "lease_pending":
        for cls in providers:
            before(cls, "acquire")
    elif point == "purchase_made":
        for cls in providers:
            after(cls, "acquire")
    elif point == "lease_bought":
        after(provisioner.steps.numbers, "rent_number")  # returns after complete_lease's commit
    elif point == "device_started":
        after(ContainerRuntime, "launch_device")
    elif point == "stream_started":
        after(ContainerRuntime, "launch_stream")
    elif point == "code_received":
        original = provisioner.steps.codes.wait_for_code

        @functools.wraps(original)
        def wait_then_die(*args, **kwargs):
            result = original(*args, **kwargs)
            if result.code:
                die()
            return result

        provisioner.steps.codes.wait_for_code = wait_then_die
    else:
        raise SystemExit(f"unknown crash point {point!r}; expected one of {CRASH_POINTS}")


def main(argv: list[str]) -> int:
    point, provider, session_id = argv
    arm(point)
    from flows.provision import provision_session
    from provisioner.steps.request import ProvisionRequest

    provision_session(
        request=ProvisionRequest(providers=[provider], code_timeout_s=30), session_id=session_id
    )
    print(f"crash point {point} was never reached", file=sys.stderr)
    return 3


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
