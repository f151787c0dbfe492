"""launch-device: start a recorded device on this worker's Docker host (work queue host-<name>).

Created by provision and maintain-pool runs over several hosts (steps.launch), one run per
device, on the device's host's work queue; the process worker there runs it with its local engine.
"""

from __future__ import annotations

import re
from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from provisioner.settings.version import VERSION
from provisioner.store import SESSION_ID_PATTERN
from tasks.devices import start_device_here


class LaunchResult(BaseModel):
    device_id: str
    profile: str
    stream_url: str | None


@flow(
    name="launch-device",
    description="Start a recorded device's device and stream containers on this worker's Docker host "
    "and wait until both are ready (runs on the host's work queue host-<name>).",
)
def launch_device(
    device_id: Annotated[str, Field(json_schema_extra={"title": "Device id (a booting device row)"})],
    reason: Annotated[str, Field(json_schema_extra={"title": "Reason recorded when it is ready"})] = "",
) -> LaunchResult:
    get_run_logger().info("provisioner %s", VERSION)
    if not re.match(SESSION_ID_PATTERN, device_id):
        raise ValueError(f"{device_id!r} is not a device id")
    device = start_device_here(device_id, reason=reason)
    return LaunchResult(device_id=device.id, profile=device.profile, stream_url=device.stream_url)
