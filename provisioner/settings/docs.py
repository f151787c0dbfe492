"""docs/settings.md, generated from the settings model: `python -m provisioner.settings.docs --write`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from provisioner.settings.model import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    PROVIDER_NAMES,
    ProviderSettings,
    ProvidersSettings,
    Settings,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"

HEADER = """\
# Settings

<!-- Generated from provisioner/settings/model.py by `python -m provisioner.settings.docs --write`;
tests/test_settings.py fails when this page is stale. Edit the model's descriptions, not this page. -->

Environment variables with the prefix `PROVISIONER_` and `__` between groups. Read, highest
first: the environment; a `.env` file in the working directory (compose passes the same `.env`
to every app service); a secrets directory, one file per variable (Docker/Kubernetes secrets:
`/run/secrets/PROVISIONER_GATEWAY__TOKEN`; another directory: `PROVISIONER_SECRETS_DIR`); and,
for the secret settings only, Prefect Secret blocks named after the variable
(`PROVISIONER_PROVIDERS__SMS_MAN__API_KEY` is the block `provisioner-providers-sms-man-api-key`;
`provisioner secrets set PROVISIONER_PROVIDERS__SMS_MAN__API_KEY` stores one, `provisioner
secrets list` shows which exist), read with one call when `PREFECT_API_URL` is set. A missing
or malformed value stops start-up with a message naming the variable (values are never echoed).
JSON values (maps, lists) are written as JSON: `PROVISIONER_POOL__WARM='{"stub-slow": 2}'`.

"""

PROVIDERS_NOTE = """
`<NAME>` is one of {names}; each provider has every `PROVISIONER_PROVIDERS__<NAME>__*` setting.
"""


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if value is None or value is PydanticUndefined:
        return "unset"
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, (dict, list)):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _text(field: FieldInfo) -> str:
    return (field.description or "").replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        variable = prefix + name.upper()
        annotation = field.annotation
        if (
            model is ProvidersSettings
            and isinstance(annotation, type)
            and issubclass(annotation, ProviderSettings)
        ):
            continue  # rendered once for every provider below
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_rows(annotation, variable + ENV_NESTED_DELIMITER))
            continue
        rows.append((variable, _default(field), _text(field)))
        if model is ProvidersSettings and name == "order":
            rows.extend(_provider_rows(prefix))
    return rows


def _provider_rows(prefix: str) -> list[tuple[str, str, str]]:
    """ProviderSettings' fields once with `<NAME>`; defaults that differ per provider are listed per provider."""
    models = {name: ProvidersSettings.model_fields[name].annotation for name in PROVIDER_NAMES}
    rows = []
    for name, base_field in ProviderSettings.model_fields.items():
        defaults = {p: _default(m.model_fields[name]) for p, m in models.items()}  # type: ignore[union-attr]
        shown = next(iter(defaults.values()))
        if len(set(defaults.values())) > 1:
            shown = "; ".join(f"{p}: {d}" for p, d in defaults.items())
        rows.append((f"{prefix}<NAME>{ENV_NESTED_DELIMITER}{name.upper()}", shown, _text(base_field)))
    for provider, model in models.items():
        for name, field in model.model_fields.items():  # type: ignore[union-attr]
            if name not in ProviderSettings.model_fields:
                variable = f"{prefix}{provider.upper()}{ENV_NESTED_DELIMITER}{name.upper()}"
                rows.append((variable, _default(field), _text(field)))
    return rows


def undocumented() -> list[str]:
    """Variables whose field has no description (every setting must say what it does)."""
    return [variable for variable, _, text in _rows(Settings, ENV_PREFIX) if not text]


def render() -> str:
    lines = [HEADER, "| variable | default | what it does |", "| --- | --- | --- |"]
    lines += [f"| `{v}` | {d} | {t} |" for v, d, t in _rows(Settings, ENV_PREFIX)]
    names = ", ".join(f"`{n.upper()}`" for n in PROVIDER_NAMES)
    return "\n".join(lines) + "\n" + PROVIDERS_NOTE.format(names=names)


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        PAGE.write_text(render())
        print(f"wrote {PAGE}")
        return 0
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
