"""How settings are named in the environment: PROVISIONER_<GROUP>__<FIELD>."""

from __future__ import annotations

ENV_PREFIX = "PROVISIONER_"
ENV_NESTED_DELIMITER = "__"
