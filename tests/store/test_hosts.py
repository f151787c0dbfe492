"""The hosts table: its transition table, the grace before down, and placement by free capacity."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from provisioner.store import hosts as hostrepo
from provisioner.store.host_states import HostState, IllegalHostTransition, check_host_transition
from provisioner.store.hosts import NoCapacity, Resources

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STUB = Resources(0.5, 256)


def add(db, name: str, cpus: float = 2.0, memory_mb: int = 2048) -> None:
    hostrepo.add_host(
        db,
        name=name,
        docker_url=f"unix:///run/{name}.sock",
        stream_address="127.0.0.1",
        cpus=cpus,
        memory_mb=memory_mb,
    )
    db.commit()


def test_memory_notation_in_mib():
    assert [hostrepo.memory_mb(x) for x in ("256m", "6g", "1024k", "512M", "1.5g")] == [
        256,
        6144,
        1,
        512,
        1536,
    ]
    with pytest.raises(ValueError, match="not a memory size"):
        hostrepo.memory_mb("lots")


def test_host_names_are_queue_safe(db):
    with pytest.raises(ValueError, match="work queue host-<name>"):
        hostrepo.add_host(db, name="Big_Host", docker_url="x", stream_address="y", cpus=1, memory_mb=1)


def test_transition_table_refuses_what_it_does_not_list():
    check_host_transition("h", HostState.DOWN, HostState.ACTIVE)
    with pytest.raises(IllegalHostTransition, match="active -> active"):
        check_host_transition("h", HostState.ACTIVE, HostState.ACTIVE)


def test_add_again_updates_capacity_and_keeps_draining(db):
    add(db, "h1")
    hostrepo.transition_host(db, "h1", HostState.DRAINING, reason="operator")
    db.commit()
    add(db, "h1", cpus=8.0)
    row = hostrepo.get_host(db, "h1")
    assert (row.state, row.cpus) == ("draining", 8.0)


def test_silence_marks_down_only_after_the_grace_and_an_answer_brings_it_back(db):
    add(db, "h1")
    assert hostrepo.record_silence(db, "h1", at=T0, grace_s=10, error="connection refused") is False
    assert hostrepo.record_silence(db, "h1", at=T0 + timedelta(seconds=5), grace_s=10, error="x") is False
    assert hostrepo.get_host(db, "h1").state == "active"
    assert (
        hostrepo.record_silence(db, "h1", at=T0 + timedelta(seconds=11), grace_s=10, error="refused") is True
    )
    row = hostrepo.get_host(db, "h1")
    assert row.state == "down"
    assert "refused" in (row.reason or "")
    hostrepo.record_answer(db, "h1", at=T0 + timedelta(seconds=20))
    row = hostrepo.get_host(db, "h1")
    assert (row.state, row.down_since, row.last_seen_at) == ("active", None, T0 + timedelta(seconds=20))


def test_without_a_grace_the_first_silence_marks_the_host_down(db):
    add(db, "h1")
    assert hostrepo.record_silence(db, "h1", at=T0, grace_s=0, error="connection refused") is True
    assert hostrepo.get_host(db, "h1").state == "down"


def test_answers_of_several_hosts_are_recorded_at_once_and_a_down_one_comes_back(db):
    add(db, "h1")
    add(db, "h2")
    assert hostrepo.record_silence(db, "h2", at=T0, grace_s=0, error="connection refused") is True
    hostrepo.record_answers(db, ["h1", "h2"], at=T0 + timedelta(seconds=3))
    db.expire_all()
    rows = [hostrepo.get_host(db, name) for name in ("h1", "h2")]
    assert [(r.state, r.down_since, r.last_seen_at) for r in rows] == [
        ("active", None, T0 + timedelta(seconds=3)),
        ("active", None, T0 + timedelta(seconds=3)),
    ]
    assert rows[1].reason == "engine answers again"


@pytest.fixture
def placements(db):
    """Stands for the devices on each host: (host, cpus, memory_mb) rows in a real table."""
    db.execute(text("CREATE TABLE test_placements (host text, cpus float, memory_mb int)"))
    db.commit()
    yield
    db.rollback()
    db.execute(text("DROP TABLE test_placements"))
    db.commit()


def used(db) -> dict[str, Resources]:
    rows = db.execute(text("SELECT host, sum(cpus), sum(memory_mb) FROM test_placements GROUP BY host"))
    return {host: Resources(float(cpus), int(mb)) for host, cpus, mb in rows}


def test_placement_takes_the_freest_active_host_and_skips_draining(db, placements):
    add(db, "big", cpus=4.0, memory_mb=4096)
    add(db, "small", cpus=1.0, memory_mb=1024)
    add(db, "drained", cpus=64.0, memory_mb=65536)
    hostrepo.transition_host(db, "drained", HostState.DRAINING, reason="operator")
    db.commit()
    chosen = []
    for _ in range(10):
        host = hostrepo.choose_host(db, STUB, used).name
        db.execute(text("INSERT INTO test_placements VALUES (:h, 0.5, 256)"), {"h": host})
        db.commit()
        chosen.append(host)
    # big fits 8 stubs, small 2: the larger free share first (ties: where more fit), never drained.
    assert chosen == ["big", "small", "big", "big", "big", "big", "small", "big", "big", "big"]
    with pytest.raises(NoCapacity):
        hostrepo.choose_host(db, STUB, used)
    db.rollback()


def test_concurrent_placements_never_oversubscribe(db_sessions, db, placements):
    add(db, "a", cpus=1.0, memory_mb=4096)  # room for 2 stubs each
    add(db, "b", cpus=1.0, memory_mb=4096)
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def place() -> None:
        with db_sessions() as own:
            barrier.wait()
            try:
                host = hostrepo.choose_host(own, STUB, used).name
            except NoCapacity:
                host = "none"
            else:
                own.execute(text("INSERT INTO test_placements VALUES (:h, 0.5, 256)"), {"h": host})
            own.commit()
            with lock:
                results.append(host)

    threads = [threading.Thread(target=place) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["a", "a", "b", "b", "none", "none"]
    assert used(db) == {"a": Resources(1.0, 512), "b": Resources(1.0, 512)}


def test_no_capacity_names_what_each_host_has_free(db, placements):
    add(db, "a", cpus=0.25, memory_mb=4096)
    with pytest.raises(NoCapacity, match=r"a: 0.25 cpus 4096 MB free"):
        hostrepo.choose_host(db, STUB, used)
