"""``airgrid db upgrade|status``: the projection database (Alembic migrations)."""

from __future__ import annotations

from airgrid.cli.base import group
from airgrid.cli.common import projection_engine, settings


@group("db")
def db() -> None:
    """The projection database (AIRGRID_DATABASE_URL), migrated with Alembic."""


@db.command("upgrade")
def upgrade() -> int:
    """Migrate the projection database to the newest schema (creates it if missing)."""
    from airgrid.sinks.sql import SqlProjection
    from airgrid.sinks.sql.migrate import current_revision, head_revision

    s = settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)  # the default SQLite file lives there
    engine = projection_engine(s, must_exist=False)
    SqlProjection(engine, zone=s.zone).setup()
    print(f"schema revision {current_revision(engine)} (head {head_revision(engine)})")
    return 0


@db.command("status")
def status() -> int:
    """The schema revision and the rows in each table."""
    from airgrid.sinks.sql import table_counts
    from airgrid.sinks.sql.migrate import current_revision, head_revision

    s = settings()
    engine = projection_engine(s)
    rev = current_revision(engine)
    print(f"schema revision {rev} (head {head_revision(engine)})")
    if rev is not None:
        for table, count in table_counts(engine).items():
            print(f"  {table:<14} {count}")
    return 0
