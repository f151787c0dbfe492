"""Real services for the whole test session: PostgreSQL, the provider simulator, Docker, Prefect.

Each is started once per session by a plugin in tests/plugins/ and shared by every test.
"""

pytest_plugins = [
    "tests.plugins.postgres",
    "tests.plugins.simulator",
    "tests.plugins.docker_engine",
    "tests.plugins.docker_hosts",
    "tests.plugins.prefect_env",
]
