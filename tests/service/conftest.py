"""Fixtures of the service tests: a migrated SQLite database per test."""

from __future__ import annotations

import pytest

from service.db.engine import make_engine, make_sessionmaker, sqlite_url
from service.db.migrate import upgrade


@pytest.fixture
def sessions(tmp_path):
    """Sessions on a fresh, migrated SQLite file in the test's folder."""
    engine = make_engine(sqlite_url(tmp_path / "triage.db"))
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()
