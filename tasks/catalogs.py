"""Keeping provider catalogs fresh (run by each reconcile pass)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from provisioner.steps import catalogs
from provisioner.steps.deps import get_deps


@task(name="refresh-catalogs", cache_policy=NONE)
def refresh_catalogs(force: bool = False) -> dict[str, str]:
    """Refresh the catalogs older than PROVISIONER_PROVIDERS__CATALOG_REFRESH_S; one provider
    failing does not stop the others (its old catalog stays in use)."""
    results = catalogs.refresh_stale(get_deps(), force=force)
    for name, result in results.items():
        get_run_logger().info("catalog of %s: %s", name, result)
    return results
