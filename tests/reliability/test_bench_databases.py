"""A benchmark never destroys data it did not create: bench/scale.py on PostgreSQL makes
a database of its own and drops it; given a database that holds tables, it refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.support.backends import ADMIN_URL, postgres_database

ROOT = Path(__file__).resolve().parents[2]


def run_scale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--backend", "postgresql",
         "--faces", "300", "--people", "10", "--skip-retrain", "--admin-url", ADMIN_URL, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip


def bench_databases() -> set[str]:
    admin = sa.create_engine(ADMIN_URL, poolclass=NullPool)
    with admin.connect() as conn:
        names = conn.exec_driver_sql(
            "SELECT datname FROM pg_database WHERE datname LIKE 'facestore\\_bench\\_%%'"
        ).scalars()
        found = set(names)
    admin.dispose()
    return found


@pytest.mark.slow
def test_scale_leaves_other_tables_alone_and_drops_its_own_database() -> None:
    with postgres_database() as url:
        theirs = sa.create_engine(url, poolclass=NullPool)
        with theirs.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE precious (x int)")
            conn.exec_driver_sql("INSERT INTO precious VALUES (42)")
        before = bench_databases()

        refused = run_scale("--db", url)
        assert refused.returncode != 0
        assert "holds 1 table this benchmark did not create (precious)" in refused.stderr

        ran = run_scale()
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert '"faces": 300' in ran.stdout
        with theirs.connect() as conn:
            assert conn.exec_driver_sql("SELECT x FROM precious").scalars().all() == [42]
        theirs.dispose()
        assert bench_databases() == before  # its own database is gone
