"""Real services for the whole test session: PostgreSQL, the provider simulator, Docker, Prefect.

Each is started once per session by a plugin in tests/plugins/ and shared by every test.

Under pytest-xdist (`scripts/test -n 2`) each worker is a session of its own, with its own
services. The scheduler below runs each module whole on one worker, and each group of
modules that share an expensive session fixture or build from the checkout itself on one worker
too; the groups are handed out first, the longest first. Tests marked `alone` run last, on the one
worker left after the others have ended.
"""

from __future__ import annotations

import os

import pytest

# The CLI's rich consoles are made at import and keep a COLUMNS found then (xdist starts its workers
# with COLUMNS=80): the CLI tests set the width they need on each call instead.
os.environ.pop("COLUMNS", None)

pytest_plugins = [
    "tests.plugins.postgres",
    "tests.plugins.simulator",
    "tests.plugins.docker_engine",
    "tests.plugins.docker_hosts",
    "tests.plugins.prefect_env",
]

# Folders whose modules share one session fixture: the fault modules' Prefect stack (`stack`;
# test_recovery resumes its schedules), the two extra Docker engines (`extra_engines`).
FOLDER_GROUPS = {"tests/faults/": "faults", "tests/hosts/": "hosts"}
# Modules that build the project or copy the checkout (`pip wheel .` writes build/ into it).
CHECKOUT_MODULES = {
    "tests/test_packaging.py",
    "tests/test_deploy_doc.py",
    "tests/gateway/test_compose.py",
    "tests/runtime/test_app_image.py",
}
GROUP_ORDER = ["faults", "hosts", "checkout"]  # the longest first
# Tests marked `alone` (the scheduler sees node ids only, so they are listed here too).
ALONE = {
    "tests/runtime/test_egress.py::test_a_netguard_container_left_by_a_killed_caller_is_removed_by_a_later_run",
    "tests/runtime/test_egress.py::test_a_deleted_rule_shows_as_unguarded_and_removal_of_stray_rules",
    "tests/runtime/test_egress.py::"
    "test_rules_left_by_a_removed_network_are_pruned_and_never_cut_a_network_on_its_subnet",
}


def xdist_group(nodeid: str) -> str:
    """The group a test runs in on the xdist workers: its folder's, the checkout's, or its module."""
    if nodeid in ALONE:
        return "alone"
    module = nodeid.split("::", 1)[0]
    for folder, group in FOLDER_GROUPS.items():
        if module.startswith(folder):
            return group
    return "checkout" if module in CHECKOUT_MODULES else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Hand out whole groups (xdist's loadscope with our groups), in collection order; the `alone`
    group only to the last worker left (the others are stopped once nothing else is to be done)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

        def _assign_work_unit(self, node) -> None:
            if self.workqueue and next(iter(self.workqueue)) == "alone" and len(self.assigned_work) > 1:
                for other in self.assigned_work:
                    if other is not node and not other.shutting_down:
                        other.shutdown()  # it ends its own tests, then its session
                return
            super()._assign_work_unit(node)

        def remove_node(self, node) -> str | None:
            crashed = super().remove_node(node)
            for other in list(self.assigned_work):
                self._reschedule(other)  # the last one left takes the `alone` tests
            return crashed

    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the named groups first and `alone` last (the scheduler keeps this
    order); a run without xdist keeps pytest's order."""
    marked = {item.nodeid for item in items if item.get_closest_marker("alone")}
    listed = {item.nodeid for item in items if item.nodeid in ALONE}
    assert marked == listed, f"tests marked alone and ALONE in tests/conftest.py differ: {marked ^ listed}"
    if not hasattr(config, "workerinput"):
        return

    def rank(item: pytest.Item) -> int:
        group = xdist_group(item.nodeid)
        if group == "alone":
            return len(GROUP_ORDER) + 1
        return GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)

    items.sort(key=rank)
