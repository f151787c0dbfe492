"""Settings for every part of provisioner: one pydantic-settings class, read once per process.

Environment variables use the prefix ``PROVISIONER_`` and ``__`` between nested groups, e.g.
``PROVISIONER_DATABASE__URL`` or ``PROVISIONER_PROVIDERS__SMS_MAN__API_KEY``. A ``.env`` file in
the working directory is read too.
"""

from provisioner.settings.model import (
    DatabaseSettings,
    DefaultsSettings,
    DockerSettings,
    GatewaySettings,
    ProviderSettings,
    ProvidersSettings,
    ReconcileSettings,
    Settings,
    SettingsError,
    get_settings,
    load_settings,
)

__all__ = [
    "DatabaseSettings",
    "DefaultsSettings",
    "DockerSettings",
    "GatewaySettings",
    "ProviderSettings",
    "ProvidersSettings",
    "ReconcileSettings",
    "Settings",
    "SettingsError",
    "get_settings",
    "load_settings",
]
