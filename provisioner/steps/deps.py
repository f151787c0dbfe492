"""The long-lived collaborators of one process: settings, the session store, providers, Docker."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from providers import build_provider
from providers.base import Provider
from provisioner.runtime import Hosts, Runtime, build_runtime, load_hosts
from provisioner.settings import Settings, get_settings
from provisioner.store import get_sessionmaker
from provisioner.store.identity import IdentityError, IdentityMissing, check_identity

log = logging.getLogger(__name__)


class ProviderNotConfigured(Exception):
    """A provider was asked for by name but has no API key."""


@dataclass
class Deps:
    settings: Settings
    sessions: sessionmaker[Session]
    _runtime: Runtime | None = None
    _providers: dict[str, Provider] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def runtime(self) -> Runtime:
        with self._lock:
            if self._runtime is None:
                self._runtime = build_runtime(self.settings, self.sessions)
            return self._runtime

    @property
    def hosts(self) -> Hosts:
        """Where devices go: the runtime's hosts, or, before it is built, as the database says,
        without making a Docker client (the gateway has no engine to ask)."""
        with self._lock:
            built = self._runtime
        return built.hosts if built is not None else load_hosts(self.settings, self.sessions)

    def provider(self, name: str) -> Provider:
        """The one long-lived client of a provider (built on first use)."""
        with self._lock:
            if name not in self._providers:
                config = self.settings.providers.get(name)
                if not config.configured:
                    raise ProviderNotConfigured(name)
                self._providers[name] = build_provider(
                    name, config, allow_unquoted=self.settings.spend.allow_unquoted
                )
            return self._providers[name]

    def close(self) -> None:
        for client in self._providers.values():
            client.close()
        self._providers.clear()


def as_deployment(settings: Settings, sessions: sessionmaker[Session]) -> Settings:
    """The settings with the database's instance id (store.identity).

    Raises IdentityMismatch when PROVISIONER_INSTANCE_ID names another deployment, IdentityMissing
    before the first `provisioner migrate`. While the database does not answer, a configured id is
    trusted (checked again by the next process start); without one nothing can be labelled."""
    try:
        with sessions() as session:
            instance_id = check_identity(session, settings.instance_id)
    except ProgrammingError as exc:  # no deployment table: not migrated yet
        raise IdentityMissing() from exc
    except OperationalError as exc:
        if settings.instance_id:
            log.warning("database unreachable: running as the configured instance %s", settings.instance_id)
            return settings
        raise IdentityError(
            "cannot read the deployment identity: the database does not answer "
            f"({type(exc.orig or exc).__name__})"
        ) from exc
    return settings.model_copy(update={"instance_id": instance_id})


@functools.cache
def get_deps() -> Deps:
    """This process's collaborators, as the deployment its database records."""
    sessions = get_sessionmaker()
    return Deps(settings=as_deployment(get_settings(), sessions), sessions=sessions)


def reset_deps() -> None:
    """Forget cached collaborators (tests change settings between runs)."""
    if get_deps.cache_info().currsize:
        get_deps().close()
    get_deps.cache_clear()
