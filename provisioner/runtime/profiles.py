"""Device image profiles as data: the shipped provisioner/runtime/profiles.yaml plus an optional extra file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Readiness(BaseModel):
    """How to tell a device has booted; the VNC port must always answer the RFB banner.

    rfb: the banner alone. status_file: first the file inside the container reads `ready_value`
    (docker-android's device_status). exec: first `command` run inside the container prints
    `ready_value` (e.g. ["adb", "shell", "getprop", "sys.boot_completed"] -> "1").
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["rfb", "status_file", "exec"] = "rfb"
    status_file: str | None = None
    command: list[str] | None = None
    ready_value: str = "READY"

    @model_validator(mode="after")
    def _status_file_named(self) -> Readiness:
        if self.kind == "status_file" and not self.status_file:
            raise ValueError("readiness kind status_file needs status_file (a path inside the container)")
        if self.kind == "exec" and not self.command:
            raise ValueError("readiness kind exec needs command (a list of arguments)")
        return self

    def probe_command(self) -> list[str] | None:
        """What to run inside the container before the RFB check, if anything."""
        if self.kind == "status_file":
            return ["cat", str(self.status_file)]
        if self.kind == "exec":
            return list(self.command or [])
        return None


class Health(BaseModel):
    """The Docker HEALTHCHECK a device container runs after boot (liveness, not readiness).

    `command` unset keeps the image's own HEALTHCHECK (the stub: its VNC server answers an RFB
    handshake); set it for images without one, e.g. ["adb", "shell", "getprop", "sys.boot_completed"]
    wrapped in a shell test. The start period is the profile's boot_timeout_s: failures while the
    device boots do not count.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] | None = None
    interval_s: float = Field(5.0, ge=1)
    timeout_s: float = Field(3.0, ge=1)
    retries: int = Field(2, ge=1)


class DeviceProfile(BaseModel):
    """One device image and the limits and devices its container gets. Never privileged: every
    capability is dropped and only `cap_add` comes back (docs/security.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    description: str = ""
    image: str
    vnc_port: int = Field(5900, ge=1, le=65535)
    adb_port: int | None = Field(None, ge=1, le=65535)
    env: dict[str, str] = Field(default_factory=dict)
    command: list[str] | None = None
    mem_limit: str = "512m"
    cpus: float = Field(1.0, gt=0, description="CPU share; becomes nano_cpus on the container")
    devices: list[str] = Field(default_factory=list, description="Host devices, e.g. /dev/kvm")
    no_new_privileges: bool = Field(True, description="Set false for images that use sudo inside")
    cap_add: list[str] = Field(
        default_factory=list, description="Capabilities kept after dropping ALL (say why in the YAML)"
    )
    pids_limit: int = Field(256, ge=16, description="Most processes and threads the container may run")
    read_only: bool = Field(False, description="Read-only root filesystem; writable paths go in tmpfs")
    tmpfs: dict[str, str] = Field(
        default_factory=dict, description="tmpfs mounts: path -> mount options (e.g. uid=1000,mode=0700)"
    )
    user: str | None = Field(None, description="User to run as (uid[:gid]); unset keeps the image's USER")
    readiness: Readiness = Readiness()
    boot_timeout_s: float = Field(60.0, gt=0, description="Readiness deadline of a boot")
    health: Health = Health()
    warm: int = Field(
        0, ge=0, description="Fewest idle, ready devices the pool keeps (PROVISIONER_POOL__WARM overrides)"
    )
    warm_max: int | None = Field(
        None,
        ge=0,
        description="Most idle devices the pool grows to with demand (docs/how-it-works.md); unset: warm, "
        "fixed (PROVISIONER_POOL__MAX overrides)",
    )
    max_age_s: float | None = Field(None, gt=0, description="An idle pool device older than this is replaced")

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, value: object) -> object:
        # YAML turns false/5 into bool/int; containers only take strings.
        if isinstance(value, dict):
            return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}
        return value

    @field_validator("devices")
    @classmethod
    def _device_paths(cls, value: list[str]) -> list[str]:
        for device in value:
            if not device.startswith("/dev/"):
                raise ValueError(f"device {device!r} must be a path under /dev/")
        return value

    @field_validator("cap_add")
    @classmethod
    def _capability_names(cls, value: list[str]) -> list[str]:
        names = [c.upper().removeprefix("CAP_") for c in value]
        if "ALL" in names or "SYS_ADMIN" in names:
            raise ValueError("cap_add may not give back ALL or SYS_ADMIN (a device is never privileged)")
        return names

    @property
    def nano_cpus(self) -> int:
        return int(self.cpus * 1_000_000_000)

    def healthcheck(self) -> dict[str, object]:
        """Docker's container healthcheck config (durations in nanoseconds)."""
        ns = 1_000_000_000
        config: dict[str, object] = {
            "interval": int(self.health.interval_s * ns),
            "timeout": int(self.health.timeout_s * ns),
            "retries": self.health.retries,
            "start_period": int(self.boot_timeout_s * ns),
        }
        if self.health.command:
            config["test"] = ["CMD", *self.health.command]
        return config

    def hardening(self) -> dict[str, object]:
        """The container's security settings (docker SDK create() keywords)."""
        return {
            "cap_drop": ["ALL"],
            "cap_add": list(self.cap_add),
            "pids_limit": self.pids_limit,
            "read_only": self.read_only,
            "tmpfs": dict(self.tmpfs),
            "security_opt": ["no-new-privileges"] if self.no_new_privileges else [],
            **({"user": self.user} if self.user else {}),
        }

    def device_mappings(self) -> list[str]:
        """Docker's "host:container:perms" form for each requested device."""
        return [f"{device}:{device}:rwm" for device in self.devices]


class ProfilesFileError(ValueError):
    """A profiles YAML file is malformed; the message names the file and the profile."""


def parse_profiles(text: str, *, source: str) -> dict[str, DeviceProfile]:
    data = yaml.safe_load(text) or {}
    raw = data.get("profiles", {}) if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        raise ProfilesFileError(f"{source}: expected a mapping under 'profiles:'")
    profiles: dict[str, DeviceProfile] = {}
    for name, body in raw.items():
        try:
            profiles[str(name)] = DeviceProfile.model_validate({**(body or {}), "name": str(name)})
        except ValueError as exc:
            raise ProfilesFileError(f"{source}: profile {name!r}: {exc}") from exc
    return profiles


def builtin_profiles() -> dict[str, DeviceProfile]:
    text = resources.files("provisioner.runtime").joinpath("profiles.yaml").read_text(encoding="utf-8")
    return parse_profiles(text, source="provisioner/runtime/profiles.yaml")


def load_profiles(extra_file: Path | None = None) -> dict[str, DeviceProfile]:
    """The shipped profiles, overridden or extended by those in `extra_file`."""
    profiles = builtin_profiles()
    if extra_file is not None:
        profiles.update(parse_profiles(Path(extra_file).read_text(encoding="utf-8"), source=str(extra_file)))
    return profiles
