"""Secret settings from Prefect Secret blocks, named by convention after their variable:
PROVISIONER_PROVIDERS__SMS_MAN__API_KEY is the block ``provisioner-providers-sms-man-api-key``.

Read with one API call, only when PREFECT_API_URL is configured (never a temporary server) and
only for secrets no variable sets: the environment, .env and the secrets directory win."""

from __future__ import annotations

import logging
import os
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_settings import PydanticBaseSettingsSource

from provisioner.settings.env import ENV_NESTED_DELIMITER, ENV_PREFIX

log = logging.getLogger(__name__)

BLOCK_PREFIX = "provisioner-"
# Plain-string settings that carry a password.
SECRET_STR_FIELDS = (("database", "url"),)


def secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The field paths of every secret setting (SecretStr fields, and the database URL)."""
    paths = []
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(secret_paths(annotation, path))
        elif SecretStr in getattr(annotation, "__args__", (annotation,)) or path in SECRET_STR_FIELDS:
            paths.append(path)
    return paths


def block_name(path: tuple[str, ...]) -> str:
    return BLOCK_PREFIX + "-".join(part.replace("_", "-") for part in path)


def variable(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(part.upper() for part in path)


def path_for_name(name: str, paths: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The secret path a block or variable name means: `provisioner-gateway-token`,
    `PROVISIONER_GATEWAY__TOKEN` and `gateway-token` all mean ('gateway', 'token')."""
    wanted = name.lower().removeprefix(BLOCK_PREFIX).removeprefix("provisioner_").replace("_", "-")
    wanted = wanted.replace("--", "-")
    return next((p for p in paths if block_name(p).removeprefix(BLOCK_PREFIX) == wanted), None)


def read_blocks(names: list[str]) -> dict[str, str]:
    """The values of the Secret blocks with these names that exist (one API call)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True, httpx_settings={"timeout": 5}) as client:
        documents = client.read_block_documents_by_type(block_type_slug="secret", include_secrets=True)
    values = {}
    for document in documents:
        if document.name in names:
            value = document.data.get("value")
            values[document.name] = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    return values


class PrefectSecretsSource(PydanticBaseSettingsSource):
    """The lowest-priority settings source: Prefect Secret blocks named after unset secret variables."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read at once in __call__

    def __call__(self) -> dict[str, Any]:
        from prefect.settings import get_current_settings

        if not get_current_settings().api.url:
            return {}
        wanted = {
            block_name(path): path
            for path in secret_paths(self.settings_cls)
            if not os.environ.get(variable(path))
        }
        if not wanted:
            return {}
        try:
            found = read_blocks(list(wanted))
        except Exception as exc:  # noqa: BLE001 - the environment still configures the process
            log.warning(
                "Prefect Secret blocks not read (%s): secrets come from the environment only",
                type(exc).__name__,
            )
            return {}
        values: dict[str, Any] = {}
        for name, value in found.items():
            *groups, leaf = wanted[name]
            target = values
            for group in groups:
                target = target.setdefault(group, {})
            target[leaf] = value
        return values
