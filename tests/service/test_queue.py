"""The database and its job queue on a real SQLite file: migrations, claims, leases, retries."""

from __future__ import annotations

import datetime
import threading

import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from service.db import queue
from service.db.engine import make_engine, make_sessionmaker, sqlite_url
from service.db.migrate import alembic_config, upgrade
from service.db.models import Base, Job, JobState, Study, utcnow

POLICY = queue.RetryPolicy(base_seconds=0.0)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(tmp_path, request):
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "triage.db")
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine):
    return make_sessionmaker(engine)


def add_studies(sessions, count: int, model_version: str = "1.0") -> list[int]:
    with sessions() as session:
        studies = [Study(study_instance_uid=f"1.2.3.{i}") for i in range(count)]
        session.add_all(studies)
        session.flush()
        for study in studies:
            assert queue.enqueue(session, study_id=study.id, model_version=model_version)
        session.commit()
        return [s.id for s in studies]


def test_migrations_build_the_models_schema_and_are_idempotent(engine):
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    upgrade(engine)  # a second run changes nothing and does not fail
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migration_matches_the_models(engine):
    """Autogenerate finds nothing to do: the migration and the models agree."""
    from alembic.autogenerate import compare_metadata

    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_a_job_is_unique_per_study_and_model_version(sessions):
    (study_id,) = add_studies(sessions, 1)
    with sessions() as session:
        assert not queue.enqueue(session, study_id=study_id, model_version="1.0")
        assert queue.enqueue(session, study_id=study_id, model_version="2.0")
        session.commit()
        assert session.scalar(select(Job).where(Job.study_id == study_id).limit(5)) is not None
        assert len(session.scalars(select(Job)).all()) == 2


def test_claim_complete_and_a_lost_lease_changes_nothing(sessions):
    add_studies(sessions, 1)
    with sessions() as session:
        job = queue.claim(session, owner="w1", lease_seconds=60)
        assert job is not None and job.attempts == 1
        assert queue.claim(session, owner="w2", lease_seconds=60) is None
        stale = queue.ClaimedJob(**{**job.__dict__, "claim_token": "not-the-token"})
        assert not queue.complete(session, stale)
        assert queue.complete(session, job)
        session.commit()
        assert session.get(Job, job.id).state == JobState.DONE
        assert not queue.complete(session, job)  # only once


def test_concurrent_workers_never_claim_the_same_job(sessions):
    add_studies(sessions, 60)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            with sessions() as session:
                job = queue.claim(session, owner=name, lease_seconds=60)
            if job is None:
                return
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) == 60


def test_failures_are_retried_then_dead_with_the_error(sessions):
    add_studies(sessions, 1)
    states = []
    with sessions() as session:
        for attempt in range(1, 4):
            job = queue.claim(session, owner="w", lease_seconds=60)
            assert job is not None and job.attempts == attempt
            states.append(queue.fail(session, job, f"boom {attempt}", POLICY))
            session.commit()
        assert states == [JobState.FAILED, JobState.FAILED, JobState.DEAD]
        assert queue.claim(session, owner="w", lease_seconds=60) is None
        dead = session.scalars(select(Job)).one()
        assert dead.last_error == "boom 3" and dead.finished_at is not None


def test_backoff_delays_the_next_claim(sessions):
    add_studies(sessions, 1)
    with sessions() as session:
        job = queue.claim(session, owner="w", lease_seconds=60)
        queue.fail(session, job, "later", queue.RetryPolicy(base_seconds=3600))
        session.commit()
        assert queue.claim(session, owner="w", lease_seconds=60) is None
        later = utcnow() + datetime.timedelta(hours=2)
        assert queue.claim(session, owner="w", lease_seconds=60, now=later) is not None


def test_expired_leases_return_to_the_queue(sessions):
    add_studies(sessions, 1)
    with sessions() as session:
        job = queue.claim(session, owner="crashed", lease_seconds=1)
        assert queue.expire_leases(session) == 0
        after = utcnow() + datetime.timedelta(seconds=5)
        assert queue.expire_leases(session, now=after) == 1
        session.commit()
        again = queue.claim(session, owner="w2", lease_seconds=60, now=after)
        assert again is not None and again.id == job.id and again.attempts == 2
        assert not queue.complete(session, job)  # the crashed worker's token is void
        assert queue.complete(session, again)


def test_release_does_not_count_an_attempt(sessions):
    add_studies(sessions, 1)
    with sessions() as session:
        job = queue.claim(session, owner="w", lease_seconds=60)
        assert queue.release(session, job)
        session.commit()
        again = queue.claim(session, owner="w", lease_seconds=60)
        assert again.attempts == 1


def test_retry_policy_grows_and_caps():
    policy = queue.RetryPolicy(base_seconds=5, factor=4, cap_seconds=60)
    delays = [policy.delay(n).total_seconds() for n in (1, 2, 3)]
    assert delays == [5, 20, 60]
    with pytest.raises(ValueError, match="factor"):
        queue.RetryPolicy(factor=0.5)


def test_alembic_command_line_config_points_at_our_scripts(tmp_path):
    url = sqlite_url(tmp_path / "cli.db")
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    assert "jobs" in inspect(engine).get_table_names()
    engine.dispose()
