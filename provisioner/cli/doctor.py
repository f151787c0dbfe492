"""`provisioner doctor`: is every piece a deployment needs there and answering? One line per check
with a fix for each broken one; the first broken piece decides the exit status."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from provisioner.prefect_api.names import DEPLOYMENTS, EXECUTOR_POOL, WORK_POOL
from provisioner.settings import Settings

MAX_CLOCK_SKEW_S = 2.0


@dataclass(frozen=True)
class Check:
    piece: str
    ok: bool
    detail: str
    fix: str = ""


class Broken(Exception):
    """A check failed: the message says what, ``fix`` how to repair it."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.fix = fix


def _database(settings: Settings) -> str:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from provisioner.store.db import make_engine
    from provisioner.store.migrate import alembic_config

    engine = make_engine(settings.database.url, pool_size=1)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            skew = (conn.execute(text("SELECT now()")).scalar_one() - datetime.now(UTC)).total_seconds()
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the finding
        raise Broken(
            f"not reachable: {type(exc).__name__}",
            "start PostgreSQL and check PROVISIONER_DATABASE__URL (host, port, user, database)",
        ) from None
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if current != head:
        raise Broken(f"schema at {current or 'nothing'}, code expects {head}", "run `provisioner migrate`")
    if abs(skew) > MAX_CLOCK_SKEW_S:
        raise Broken(
            f"the database's clock is {skew:+.1f} s from this machine's",
            "run NTP (chrony/systemd-timesyncd) on both machines: leases and deadlines compare their times",
        )
    return f"reachable, migrated ({head}), clock skew {skew:+.2f} s"


def _prefect_api() -> str:
    from prefect.settings import get_current_settings

    from provisioner.prefect_api.setup import api_failure

    url = get_current_settings().api.url
    if not url:
        raise Broken(
            "PREFECT_API_URL is not set",
            "set PREFECT_API_URL=http://<server>:4200/api (in .env, or the environment)",
        )
    failure = api_failure()
    if failure is not None:
        raise Broken(
            f"{url} does not answer: {type(failure).__name__}",
            "start `prefect server start` (and check PREFECT_API_URL, PREFECT_API_AUTH_STRING / PREFECT_API_KEY)",
        )
    return f"{url} answers"


def _deployments() -> str:
    from provisioner.prefect_api.setup import (
        SILENT_AUTOMATION,
        ZOMBIE_AUTOMATION,
        missing_deployments,
        zombie_automation_exists,
    )

    missing = missing_deployments(DEPLOYMENTS)
    if missing:
        raise Broken(f"missing: {', '.join(missing)}", "run `provisioner deploy` from the checkout")
    if not zombie_automation_exists():
        raise Broken(
            f"automations {ZOMBIE_AUTOMATION!r} and {SILENT_AUTOMATION!r}: one missing",
            "run `provisioner deploy` from the checkout",
        )
    return f"{len(DEPLOYMENTS)} deployments and the heartbeat automations"


def _polling(pool: str, start: str) -> str:
    from provisioner.prefect_api.setup import pool_workers

    workers = pool_workers(pool)
    if workers is None:
        raise Broken(f"work pool {pool} missing", "run `provisioner deploy`")
    now = datetime.now(UTC)
    alive = []
    for worker in workers:
        # A worker beats every heartbeat_interval_seconds; two missed beats and it is gone.
        window = 2 * (worker.heartbeat_interval_seconds or 30) + 5
        if worker.last_heartbeat_time and (now - worker.last_heartbeat_time).total_seconds() <= window:
            alive.append(worker.name)
    if not alive:
        raise Broken(f"nothing is polling work pool {pool}", start)
    return f"{len(alive)} polling {pool}: {', '.join(sorted(alive))}"


def _worker() -> str:
    return _polling(WORK_POOL, f"start one: `prefect worker start --pool {WORK_POOL}` (from the checkout)")


def _executor() -> str:
    return _polling(
        EXECUTOR_POOL, "start one: `provisioner executor` (from the checkout, with the worker's settings)"
    )


def _docker(settings: Settings) -> str:
    import docker

    from provisioner.runtime import load_profiles
    from provisioner.runtime.egress import GUARD_IMAGE
    from provisioner.store import get_sessionmaker
    from provisioner.store.hosts import list_hosts

    profiles = load_profiles(settings.docker.profiles_file)
    images = {profiles[settings.docker.default_profile].image, settings.docker.stream_image}
    if settings.docker.egress_guard:
        images.add(GUARD_IMAGE)
    with get_sessionmaker()() as db:
        hosts = [(h.name, h.docker_url) for h in list_hosts(db) if h.state != "down"]
    engines = hosts or [("local", settings.docker.host)]
    for name, url in engines:
        try:
            client = docker.DockerClient(base_url=url, timeout=5) if url else docker.from_env(timeout=5)
            client.ping()
        except Exception as exc:  # noqa: BLE001
            raise Broken(
                f"engine {name} ({url or 'DOCKER_HOST / local socket'}) does not answer: {type(exc).__name__}",
                "start dockerd (scripts/ensure-docker) or fix PROVISIONER_DOCKER__HOST / the host's URL",
            ) from None
        try:
            missing = [image for image in sorted(images) if not client.images.list(name=image)]
        finally:
            client.close()
        if missing:
            raise Broken(
                f"engine {name} lacks {', '.join(missing)}", "run scripts/build-images on that engine"
            )
    return f"{', '.join(n for n, _ in engines)} answer; images {', '.join(sorted(images))} present"


def _providers(settings: Settings) -> Iterator[tuple[str, Callable[[], str]]]:
    from providers import build_provider

    configured = settings.providers.configured_names()
    if not configured:

        def none() -> str:
            raise Broken(
                "no provider has an API key",
                "set PROVISIONER_PROVIDERS__<NAME>__API_KEY (docs/providers.md), or point one at the simulator",
            )

        yield "providers", none
        return
    for name in configured:

        def one(name: str = name) -> str:
            provider = build_provider(name, settings.providers.get(name))
            try:
                balance = provider.balance()
            except Exception as exc:  # noqa: BLE001 - the provider's own error says what is wrong
                raise Broken(
                    f"balance call failed: {type(exc).__name__}: {exc}",
                    f"check PROVISIONER_PROVIDERS__{name.upper()}__API_KEY and __BASE_URL",
                ) from None
            return f"key accepted, balance {balance} {provider.currency}"

        yield f"provider {name}", one


def _gateway(settings: Settings) -> str:
    from provisioner.store import get_sessionmaker
    from provisioner.store.clients import count_active_clients

    with get_sessionmaker()() as db:
        clients = count_active_clients(db)
    token = settings.gateway.token is not None and bool(settings.gateway.token.get_secret_value())
    if not token and not clients and not settings.gateway.insecure_no_auth:
        raise Broken(
            "no operator token and no client: the gateway would refuse everyone",
            "set PROVISIONER_GATEWAY__TOKEN, or `provisioner clients add NAME`",
        )
    said = ["operator token set" if token else "no operator token", f"{clients} client(s)"]
    return ", ".join(said)


def _webhooks(settings: Settings) -> str:
    secret = settings.codes.webhook_secret
    if secret is None or not secret.get_secret_value():
        return "off (no PROVISIONER_CODES__WEBHOOK_SECRET): the watcher polls"
    if len(secret.get_secret_value()) < 16:
        raise Broken(
            "PROVISIONER_CODES__WEBHOOK_SECRET is shorter than 16 characters",
            "use a long random string (it is the only thing guarding /webhooks/)",
        )
    return "secret set"


def checks(settings: Settings) -> Iterator[tuple[str, Callable[[], str]]]:
    """(piece, check) in the order a deployment depends on them."""
    yield "database", lambda: _database(settings)
    yield "prefect api", _prefect_api
    yield "deployments", _deployments
    yield "worker", _worker
    if settings.gateway.run_on == "executor":  # the gateway's provisions wait for one
        yield "executor", _executor
    yield "docker", lambda: _docker(settings)
    yield from _providers(settings)
    yield "gateway auth", lambda: _gateway(settings)
    yield "webhooks", lambda: _webhooks(settings)


def run_checks(settings: Settings) -> Iterator[Check]:
    for piece, check in checks(settings):
        started = time.monotonic()
        try:
            detail = check()
        except Broken as exc:
            yield Check(piece, False, str(exc), exc.fix)
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is still a finding, named
            yield Check(piece, False, f"{type(exc).__name__}: {exc}", "see the message")
        else:
            yield Check(piece, True, f"{detail} ({time.monotonic() - started:.1f} s)")
