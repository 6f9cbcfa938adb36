"""The SQL projection on a real PostgreSQL server (psycopg 3): same contract as on SQLite.
The server comes from AIRGRID_TEST_POSTGRES_URL (scripts/ensure_postgres.sh); no URL is a failure."""

from __future__ import annotations

from sqlalchemy import text

from airgrid.sinks.sql import SqlProjection, make_engine
from airgrid.sinks.sql.migrate import current_revision
from tests.sql_support import check_projection, pg_database

__all__ = ["pg_database"]


def test_projection_contract_and_replay_on_postgres(pg_database: str) -> None:
    check_projection(pg_database)


def test_postgres_schema_is_migrated_with_aware_timestamps(pg_database: str) -> None:
    engine = make_engine(pg_database)
    SqlProjection(engine).setup()
    assert current_revision(engine) == "0003"
    with engine.connect() as conn:
        kinds = dict(
            conn.execute(
                text(
                    "select column_name, data_type from information_schema.columns "
                    "where table_name = 'task_events'"
                )
            ).all()
        )
    assert kinds["at"] == "timestamp with time zone" and kinds["payload"] == "json"
    engine.dispose()
