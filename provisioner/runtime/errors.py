"""Errors of the container runtime, and the one place docker exceptions are translated.

    RuntimeFailure
     ├── EngineUnreachable      no engine answers (start one: scripts/ensure-docker or dockerd)
     ├── HostDown               the device's host is down (hosts table): its engine is not called
     ├── EngineRefused          the engine URL is unsafe (plain tcp:// off this machine) or unusable
     ├── WrongEngine            a host's launch reached a worker whose engine is another host's
     ├── EngineError            the engine answered with an error (status_code; 5xx is transient)
     ├── ImageMissing           the image is not on the host (build it: scripts/build-images)
     ├── ContainerMissing       the named container does not exist
     ├── NameConflict           a container or network of that name exists already
     ├── NotOwned               the container does not carry this instance's ownership labels
     ├── UnknownProfile         no device profile of that name
     ├── ContainerExited        the container stopped (exit_code, logs: its last lines)
     └── NotReady               readiness not reached by the deadline (deadline_s, logs)

Callers never see docker or requests exceptions: `translate_docker_errors()` maps them, and
`is_retryable()` is the single decision "retry or not" for task retry policies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker.errors
import requests.exceptions

ENGINE_HINT = "start one with `scripts/ensure-docker` (root: `dockerd > /var/log/dockerd.log 2>&1 &`)"
BUILD_HINT = "build it with `scripts/build-images`"


class RuntimeFailure(Exception):
    """Base of every container runtime error."""

    def __init__(self, message: str, *, container: str | None = None) -> None:
        super().__init__(message)
        self.container = container


class EngineUnreachable(RuntimeFailure):
    """No Docker engine answers at the configured address."""

    def __init__(self, message: str) -> None:
        super().__init__(f"Docker engine unreachable: {message}; {ENGINE_HINT}")


class HostDown(RuntimeFailure):
    """The device's host is `down` (its engine stayed silent past the grace): it is not called;
    what is left on it is removed as unowned when it answers a reconcile pass again."""

    def __init__(self, host: str) -> None:
        super().__init__(
            f"host {host} is down: its containers cannot be removed until its engine answers again"
        )
        self.host = host


class EngineRefused(RuntimeFailure):
    """The engine URL would expose the engine (plain tcp:// off this machine), or its transport
    cannot be used (ssh:// without paramiko, missing certificate files); runtime.engines."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class WrongEngine(RuntimeFailure):
    """A launch-device run was picked up by a worker whose engine is not the device's host's."""


class EngineError(RuntimeFailure):
    """The engine refused or failed a request; `status_code` is its HTTP status."""

    def __init__(self, message: str, *, status_code: int | None, container: str | None = None) -> None:
        super().__init__(message, container=container)
        self.status_code = status_code


class ImageMissing(RuntimeFailure):
    def __init__(self, image: str) -> None:
        super().__init__(f"image {image} is not on this Docker host; {BUILD_HINT}")
        self.image = image


class ContainerMissing(RuntimeFailure):
    def __init__(self, container: str) -> None:
        super().__init__(f"container {container} does not exist", container=container)


class NameConflict(RuntimeFailure):
    def __init__(self, container: str, detail: str = "") -> None:
        message = f"a container named {container} already exists"
        super().__init__(f"{message}: {detail}" if detail else message, container=container)


class NotOwned(RuntimeFailure):
    """Refusing to touch a container another deployment (or nobody) owns."""

    def __init__(self, container: str, instance_id: str) -> None:
        super().__init__(
            f"container {container} is not managed by provisioner instance {instance_id}", container=container
        )


class UnknownProfile(RuntimeFailure):
    def __init__(self, profile: str, known: list[str]) -> None:
        super().__init__(f"unknown device profile {profile!r}; known: {', '.join(sorted(known))}")
        self.profile = profile


class ContainerExited(RuntimeFailure):
    """The container stopped; `logs` holds its last lines."""

    def __init__(
        self, container: str, *, exit_code: int | None, logs: str, profile: str | None = None
    ) -> None:
        what = f"container {container} (device profile {profile})" if profile else f"container {container}"
        super().__init__(f"{what} exited with code {exit_code}; last log lines:\n{logs}", container=container)
        self.exit_code = exit_code
        self.logs = logs
        self.profile = profile


class NotReady(RuntimeFailure):
    """Readiness was not reached within `deadline_s`; `logs` holds the container's last lines."""

    def __init__(self, container: str, *, deadline_s: float, reason: str, logs: str) -> None:
        super().__init__(
            f"container {container} not ready after {deadline_s:.0f}s ({reason}); last log lines:\n{logs}",
            container=container,
        )
        self.deadline_s = deadline_s
        self.reason = reason
        self.logs = logs


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying the same call may succeed: engine hiccups and 5xx yes, the rest no.

    NameConflict is retryable: it means a concurrent launch won the race, and the retried
    (idempotent) launch returns that container.
    """
    if isinstance(exc, EngineUnreachable | NameConflict):
        return True
    if isinstance(exc, EngineError):
        # "ambiguous": two networks of one name for a moment, until ensure_network prunes one.
        return exc.status_code is None or exc.status_code >= 500 or "is ambiguous" in str(exc)
    return False


@contextlib.contextmanager
def translate_docker_errors(*, container: str | None = None, image: str | None = None) -> Iterator[None]:
    """Map docker/requests exceptions raised inside the block to RuntimeFailure subclasses."""
    try:
        yield
    except RuntimeFailure:
        raise
    except docker.errors.ImageNotFound as exc:
        raise ImageMissing(image or str(exc.explanation or exc)) from exc
    except docker.errors.NotFound as exc:
        if image is not None and container is None:
            raise ImageMissing(image) from exc
        raise ContainerMissing(container or "?") from exc
    except docker.errors.APIError as exc:
        status = exc.status_code
        explanation = str(exc.explanation or exc)
        if status == 409 and ("already in use" in explanation or "already exists" in explanation):
            raise NameConflict(container or "?", explanation) from exc
        raise EngineError(
            f"Docker API error {status}: {explanation}", status_code=status, container=container
        ) from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise EngineUnreachable(str(exc)) from exc
    except docker.errors.DockerException as exc:
        # from_env() wraps connection failures this way ("Error while fetching server API version").
        raise EngineUnreachable(str(exc)) from exc
