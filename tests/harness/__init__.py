"""The test and bench harness: real services started for a test or a benchmark.

- ``services``: a free port, a throwaway PostgreSQL (migrated), the provider simulator.
- ``deployed``: the deployed path: `prefect server start`, `provisioner deploy`, process workers,
  the few Prefect REST calls the tests make, and a recorder of every gateway answer.
- ``gateway``: the gateway on a real uvicorn (in a thread or as its own process), a recording
  stand-in for Prefect flow runs, and a device with its stream launched for gateway tests.

It lives beside the tests, not in the wheel: it deploys this checkout's prefect.yaml and starts
workers in it, so it needs the checkout. Fixtures stay in conftest files and tests/plugins; this
package holds no fixtures and does not import pytest.
"""
