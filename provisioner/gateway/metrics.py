"""GET /metrics: Prometheus metrics derived from the session store at scrape time.

Flows run in worker processes, not in the gateway, so in-process counters would see nothing:
every family is computed by a few aggregate queries (each one round trip, grouped in SQL) when
Prometheus scrapes. Counters are totals over the rows the database keeps.

| family | labels | from |
| --- | --- | --- |
| provisioner_sessions | state | sessions by state |
| provisioner_provisions_total | outcome (started, verified, failed), provider, reason | sessions; verified/failed events (reason: the failure's class, the text before ':') |
| provisioner_provision_duration_seconds | | created -> verified, verified sessions |
| provisioner_code_wait_duration_seconds | | awaiting_code -> verified |
| provisioner_reconcile_actions_total | kind | actions reconcile passes took and did, every kind of reconciler.model.Kind (store.reconcile_counts) |
| provisioner_reconcile_action_failures_total | kind | actions reconcile passes took that failed, by kind (store.reconcile_counts) |
| provisioner_provider_errors_total | provider, error | leases whose purchase failed, by exception class |
| provisioner_spend_total | provider, currency | charged amounts of numbers bought and not refunded (store.spend) |
| provisioner_refunds_total | provider, currency | charged amounts of numbers bought and then refunded |
| provisioner_overcharges_total | provider | numbers charged above their effective cap (cancelled at once) |
| provisioner_provider_balance | provider, currency | each account's last balance read (provider_accounts) |
| provisioner_devices | profile, state | devices by state (idle = the warm pool) |
| provisioner_code_watcher_heartbeat_age_seconds | provider, mode | code_watchers (no series: no watcher for that provider) |
| provisioner_leases_waiting_for_code | provider | bought leases without their code yet |
| provisioner_build_info | version | |

Reconcile actions are counted by the passes themselves (one row per kind, since migration 0010):
containers and networks removed leave no other row.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from provisioner.gateway.owners import operators_only
from provisioner.reconciler.model import Kind
from provisioner.settings.version import VERSION
from provisioner.store import spend as spendrepo
from provisioner.store.device_states import DeviceState
from provisioner.store.reconcile_counts import action_counts
from provisioner.store.states import State

PROVISION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
CODE_WAIT_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)

_PROVISIONS = text(
    """
    SELECT 'started' AS outcome, coalesce(provider, 'none'), '' AS reason, count(*) FROM sessions GROUP BY 2
    UNION ALL
    SELECT e.to_state, coalesce(s.provider, 'none'),
           CASE WHEN e.to_state = 'failed' THEN left(split_part(e.reason, ':', 1), 60) ELSE '' END,
           count(*)
    FROM session_events e JOIN sessions s ON s.id = e.session_id
    WHERE e.to_state IN ('verified', 'failed') AND e.from_state IS DISTINCT FROM e.to_state
    GROUP BY 1, 2, 3
    """
)
_DURATIONS = """
    WITH verified AS (
        SELECT session_id, min(at) AS at FROM session_events WHERE to_state = 'verified' GROUP BY 1
    ), waiting AS (
        SELECT session_id, min(at) AS at FROM session_events WHERE to_state = 'awaiting_code' GROUP BY 1
    ), d AS (
        SELECT extract(epoch FROM v.at - s.created_at) AS provision,
               extract(epoch FROM v.at - w.at) AS code_wait
        FROM verified v JOIN sessions s ON s.id = v.session_id LEFT JOIN waiting w ON w.session_id = v.session_id
    )
    SELECT {columns} FROM d
"""
_PROVIDER_ERRORS = text(
    """
    SELECT provider, left(split_part(coalesce(provider_status, 'unknown'), ':', 1), 60), count(*)
    FROM number_leases WHERE outcome = 'failed' GROUP BY 1, 2
    """
)

_DEVICES = text("SELECT profile, state, count(*) FROM devices GROUP BY 1, 2")
_WATCHERS = text("SELECT provider, mode, extract(epoch FROM now() - beat_at) FROM code_watchers")
_WAITING = text(
    "SELECT provider, count(*) FROM number_leases WHERE outcome = 'active' AND activation_id IS NOT NULL GROUP BY 1"
)


def _histogram_query(column: str, buckets: tuple[float, ...]) -> str:
    parts = [f"count(*) FILTER (WHERE {column} <= {float(b)})" for b in buckets]
    parts += [f"count({column})", f"coalesce(sum({column}), 0)"]
    return ", ".join(parts)


def _histogram(
    db: Session, name: str, documentation: str, column: str, buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    row = db.execute(text(_DURATIONS.format(columns=_histogram_query(column, buckets)))).one()
    counts, total, seconds = row[: len(buckets)], row[len(buckets)], row[len(buckets) + 1]
    family = HistogramMetricFamily(name, documentation)
    family.add_metric(
        [],
        buckets=[(str(float(b)), c) for b, c in zip(buckets, counts, strict=True)] + [("+Inf", total)],
        sum_value=float(seconds),
    )
    return family


class StoreCollector:
    """A prometheus_client collector reading the session store on each scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "provisioner_build_info", "The running provisioner version", labels=["version"]
        )
        info.add_metric([VERSION], 1)
        yield info
        with self.sessions() as db:
            yield from self._collect(db)

    def _collect(self, db: Session) -> Iterator[Metric]:
        by_state = dict(db.execute(text("SELECT state, count(*) FROM sessions GROUP BY state")).all())
        sessions = GaugeMetricFamily("provisioner_sessions", "Sessions by state", labels=["state"])
        for state in State:
            sessions.add_metric([state.value], by_state.get(state.value, 0))
        yield sessions

        provisions = CounterMetricFamily(
            "provisioner_provisions",
            "Provisions started, verified and failed, by provider (none: failed before a number) and reason",
            labels=["outcome", "provider", "reason"],
        )
        for outcome, provider, reason, count in db.execute(_PROVISIONS):
            provisions.add_metric([outcome, provider, reason], count)
        yield provisions

        yield _histogram(
            db,
            "provisioner_provision_duration_seconds",
            "Seconds from request to verified",
            "provision",
            PROVISION_BUCKETS,
        )
        yield _histogram(
            db,
            "provisioner_code_wait_duration_seconds",
            "Seconds from device ready (awaiting_code) to the code",
            "code_wait",
            CODE_WAIT_BUCKETS,
        )

        counted = action_counts(db)
        actions = CounterMetricFamily(
            "provisioner_reconcile_actions", "Actions reconcile passes took and did, by kind", labels=["kind"]
        )
        failures = CounterMetricFamily(
            "provisioner_reconcile_action_failures",
            "Actions reconcile passes took that failed, by kind",
            labels=["kind"],
        )
        for kind in sorted({*Kind, *counted}):  # every kind, with 0 until a pass takes it
            done, failed = counted.get(kind, (0, 0))
            actions.add_metric([kind], done)
            failures.add_metric([kind], failed)
        yield actions
        yield failures

        errors = CounterMetricFamily(
            "provisioner_provider_errors",
            "Number purchases that failed, by provider and error class",
            labels=["provider", "error"],
        )
        for provider, error, count in db.execute(_PROVIDER_ERRORS):
            errors.add_metric([provider, error], count)
        yield errors

        spent = CounterMetricFamily(
            "provisioner_spend",
            "Charged amounts of the numbers bought and not refunded, by provider and currency",
            labels=["provider", "currency"],
        )
        refunds = CounterMetricFamily(
            "provisioner_refunds",
            "Charged amounts of the numbers bought and then refunded, by provider and currency",
            labels=["provider", "currency"],
        )
        overcharged: dict[str, int] = {}
        for provider, currency, charged, refunded, over in spendrepo.totals_by_provider(db):
            spent.add_metric([provider, currency], float(charged))
            refunds.add_metric([provider, currency], float(refunded))
            overcharged[provider] = overcharged.get(provider, 0) + over
        overcharges = CounterMetricFamily(
            "provisioner_overcharges",
            "Numbers charged above their effective cap (each cancelled at once), by provider",
            labels=["provider"],
        )
        for provider, count in sorted(overcharged.items()):
            overcharges.add_metric([provider], count)
        balances = GaugeMetricFamily(
            "provisioner_provider_balance",
            "Each provider account's balance as last read, in the account's currency",
            labels=["provider", "currency"],
        )
        for row in spendrepo.list_accounts(db):
            if row.balance is not None:
                balances.add_metric([row.provider, row.currency or "-"], float(row.balance))
        yield from (spent, refunds, overcharges, balances)

        counts = {(profile, state): count for profile, state, count in db.execute(_DEVICES)}
        devices = GaugeMetricFamily(
            "provisioner_devices",
            "Devices by profile and state; idle devices are the warm pool",
            labels=["profile", "state"],
        )
        for profile in sorted({profile for profile, _ in counts}):
            for state in DeviceState:
                devices.add_metric([profile, state.value], counts.get((profile, state.value), 0))
        yield devices

        watchers = GaugeMetricFamily(
            "provisioner_code_watcher_heartbeat_age_seconds",
            "Seconds since the code watcher holding each provider beat (stale: flows poll themselves)",
            labels=["provider", "mode"],
        )
        for provider, mode, age in db.execute(_WATCHERS):
            watchers.add_metric([provider, mode], float(age))
        yield watchers
        waiting = GaugeMetricFamily(
            "provisioner_leases_waiting_for_code",
            "Bought numbers waiting for their code",
            labels=["provider"],
        )
        for provider, count in db.execute(_WAITING):
            waiting.add_metric([provider], count)
        yield waiting


async def metrics(request: Request) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(request.app.state.gateway.deps.sessions))
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", operators_only(metrics), methods=["GET"])]
