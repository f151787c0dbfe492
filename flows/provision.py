"""provision: device (claimed warm, else cold-booted) -> number -> code, every side effect undone on failure."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.logging.loggers import flow_run_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled
from prefect.states import State as PrefectState
from prefect.transactions import transaction
from pydantic import BaseModel, Field

from provisioner.prefect_api.runs import cancel_requested
from provisioner.reconciler.model import Policy
from provisioner.reconciler.rules.runs import NOTHING_BOUGHT
from provisioner.settings.version import VERSION
from provisioner.steps.deps import get_deps
from provisioner.steps.devices import number_rented
from provisioner.steps.lifecycle import Heartbeat, compensate
from provisioner.steps.numbers import NoProviderConfigured
from provisioner.steps.request import ProvisionRequest, form_defaults, resolve
from provisioner.steps.spend import BudgetExhausted
from provisioner.steps.streams import gateway_stream_url
from provisioner.store import SESSION_ID_PATTERN, SessionRow, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.values.phones import mask_phone
from tasks.checks import check_request
from tasks.devices import boot_device_for_session, claim_session_device
from tasks.numbers import cancel_number, finish_number, rent_number, wait_for_code
from tasks.publish import Progress, boot_deadline_s, label_flow_run, publish, publish_session
from tasks.retry import is_transient
from tasks.sessions import adopt_session

# How long a short "cancel too early" refusal is waited out before moving on to the next number.
CANCEL_WAIT_S = 150.0


class CodeNotReceived(Exception):
    """Every number tried timed out or was ended by the provider without a code."""


class ProvisionResult(BaseModel):
    session_id: str
    state: str
    stream_url: str | None
    phone: str
    provider: str | None
    code: str | None


def _actor() -> str:
    return f"flow-run:{flow_run.id}" if flow_run.id else "flow-run:local"


def _cancel_requested() -> str | None:
    """Cooperative cancellation: a run cancelled through the API stops waiting at the next poll."""
    return "the flow run was cancelled" if cancel_requested() else None


def _session_code(deps: Any, session_id: str) -> str | None:
    with deps.sessions() as db:
        return repo.get_session(db, session_id).verification_code


def _run_again_later(deps: Any, session_id: str, state: PrefectState) -> bool:
    """A run that failed on a transient error (is_transient: the database or an engine away for
    longer than the tasks' retries) before anything was bought is not undone: its session waits
    for reconciliation to run it again (rules.runs.dead_provision), as for a run that died."""
    if not state.is_failed():
        return False
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - an unreadable result is not known to be transient
        return False
    if not (isinstance(error, BaseException) and is_transient(error)):
        return False
    with deps.sessions() as db:
        row = repo.get_session(db, session_id)
        leased = lease_repo.open_lease_for_session(db, session_id) is not None
    return State(row.state) in NOTHING_BOUGHT and not leased and row.submissions < Policy.max_submissions


def _compensate_from_hook(final: State):
    # Prefect calls hooks by keyword (flow=, flow_run=, state=): the names are part of the signature.
    def hook(flow: Any, flow_run: Any, state: PrefectState) -> None:
        """Backstop for failures outside the flow body (crash, cancellation by the worker)."""
        deps = get_deps()
        run_id = str(flow_run.id)
        with deps.sessions.begin() as db:
            ids = [sid for (sid,) in db.query(SessionRow.id).filter(SessionRow.flow_run_id == run_id)]
        for session_id in ids:
            if final == State.FAILED and _run_again_later(deps, session_id, state):
                flow_run_logger(flow_run, flow).warning(
                    "session %s: the run failed on a transient error before anything was bought; "
                    "reconciliation runs it again",
                    session_id,
                )
                continue
            compensate(
                deps,
                session_id,
                reason=f"flow run {state.name}: {state.message}",
                actor=f"flow-run:{run_id}",
                final=final,
            )
            publish(session_id)  # the final state and its reason, on the session's artifact

    return hook


@flow(
    name="provision",
    description="Get a device (warm from the pool, else cold-booted), rent a number, wait for the code.",
    on_failure=[_compensate_from_hook(State.FAILED)],
    on_crashed=[_compensate_from_hook(State.FAILED)],
    on_cancellation=[_compensate_from_hook(State.CANCELLED)],
)
def provision_session(
    # Annotated (not `= Field(...)`): the defaults stay plain values when a run is started without
    # these parameters (Prefect API, a re-run), while the form still gets titles and descriptions.
    request: Annotated[
        ProvisionRequest,
        Field(json_schema_extra={"title": "Provision request", "default": form_defaults()}),
    ] = ProvisionRequest(),
    session_id: Annotated[
        str | None,
        Field(
            json_schema_extra={
                "title": "Advanced: resume session id",
                "description": "Advanced, leave empty: a new session id is chosen. Set it only to "
                "resume a session whose provision was interrupted (the gateway sets it itself).",
                # A plain text field, empty by default (no "None" alternative in the form).
                "anyOf": [{"type": "string", "pattern": f"^({SESSION_ID_PATTERN.strip('^$')})?$"}],
            },
        ),
    ] = "",
) -> ProvisionResult | PrefectState:
    """Provision one phone-verified device session.

    `request` holds the business inputs (empty fields take the configured defaults).
    `session_id` is optional: the gateway writes the session before it creates the run, and the run
    adopts it. A flow run owns at most one session: a re-run of the same flow run (a Retry in the
    UI, a crashed run restarted) resumes that session while it is live, or ends at once saying it
    already ended; it never starts a second session and never buys again for an attempt made.
    The device comes first (the number's clock starts when the screen is usable): the one the
    gateway claimed, else an idle pool device, else a cold boot under the host's launch limit.
    """
    logger = get_run_logger()
    logger.info("provisioner %s", VERSION)
    deps = get_deps()
    plan = resolve(request, deps.settings)
    actor = _actor()
    adopted = adopt_session(
        session_id=session_id or None, request=plan, flow_run_id=str(flow_run.id), actor=actor
    )
    sid = adopted.session_id
    label_flow_run("provision", sid)
    if adopted.state == State.VERIFIED:  # a re-run of a run that finished its work: nothing to do
        return _result(deps, sid)
    if not [name for name in plan.providers if deps.settings.providers.get(name).configured]:
        error = NoProviderConfigured()
        compensate(deps, sid, reason=str(error), actor=actor)
        raise error
    rent = plan.rent
    heartbeat = Heartbeat(deps, sid, deps.settings.reconcile.heartbeat_interval_s)
    try:
        with heartbeat, transaction():
            check_request(plan, sid)  # spend nothing before the budget, profile, Docker and images are there
            if claim_session_device(sid, profile=plan.device_profile, actor=actor) is None:
                deadline = boot_deadline_s(plan.device_profile)
                with Progress(
                    sid, "boot", f"Booting a {plan.device_profile} device (deadline {deadline:g} s)", deadline
                ):
                    boot_device_for_session(sid, profile=plan.device_profile, actor=actor)
            publish_session(sid)  # device ready
            if reason := _cancel_requested():  # cancelled during the boot: buy nothing
                compensate(deps, sid, reason=reason, actor=actor, final=State.CANCELLED)
                publish_session(sid)
                return Cancelled(message=f"session {sid} cancelled: {reason}")
            rented = rent_number(sid, rent, attempt=adopted.attempt, actor=actor)
            number_rented(deps, sid, provider=rented.provider, actor=actor)
            publish_session(sid)  # number rented: its masked phone
            code = None
            for attempt in range(adopted.attempt, max(plan.number_attempts, adopted.attempt) + 1):
                waiting = f"Waiting for the code on number {attempt} (up to {plan.code_timeout_s:g} s)"
                with Progress(sid, "code", waiting, plan.code_timeout_s):
                    result = wait_for_code(
                        sid,
                        rented.lease_id,
                        timeout_s=plan.code_timeout_s,
                        actor=actor,
                        should_stop=_cancel_requested,
                    )
                if result.code:
                    code = result.code
                    break
                if _cancel_requested():
                    compensate(deps, sid, reason=result.reason, actor=actor, final=State.CANCELLED)
                    publish_session(sid)
                    return Cancelled(message=f"session {sid} cancelled: {result.reason}")
                logger.warning("attempt %d: %s", attempt, result.reason)
                if cancel_number(rented.lease_id, max_wait_s=CANCEL_WAIT_S) == "finished":
                    code = _session_code(deps, sid)  # it arrived just before the cancel: finished, kept
                    break
                if attempt < max(plan.number_attempts, adopted.attempt):
                    rented = rent_number(sid, rent, attempt=attempt + 1, actor=actor)
                    publish_session(sid)
            if code is None:
                raise CodeNotReceived(f"no code after {plan.number_attempts} number(s): {result.reason}")
            if not deps.settings.codes.keep_number_open:  # open: another code can be asked for
                finish_number(rented.lease_id)
            with deps.sessions.begin() as db:
                repo.transition(
                    db, sid, State.VERIFIED, reason="code received", actor=actor, expected=State.AWAITING_CODE
                )
            publish_session(sid)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, BudgetExhausted) else f"{type(exc).__name__}: {exc}"
        compensate(deps, sid, reason=reason, actor=actor)
        publish_session(sid)
        raise
    return _result(deps, sid)


def _result(deps, sid: str) -> ProvisionResult:
    with deps.sessions.begin() as db:
        s = repo.get_session(db, sid)
        stream = gateway_stream_url(deps, sid) if s.stream_url else None  # never a published port
        get_run_logger().info("session %s %s; stream %s", sid, s.state, stream or "-")
        return ProvisionResult(
            session_id=sid,
            state=s.state,
            stream_url=stream,
            phone=mask_phone(s.phone_number),
            provider=s.provider,
            code=s.verification_code,
        )
