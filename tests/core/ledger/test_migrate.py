from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bot.core.errors import DatabaseNewerThanCode
from bot.core.ledger.migrate import (
    MIGRATIONS_DIR,
    MigrationError,
    check_current,
    discover,
    migrate,
    split_statements,
)
from bot.core.ledger.sqlite import SqliteLedger

NEWEST = discover()[-1].version


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    finally:
        conn.close()


def test_the_repository_migrations_are_numbered_from_one() -> None:
    found = discover(MIGRATIONS_DIR)
    assert [m.version for m in found] == list(range(1, len(found) + 1))


def test_a_fresh_database_gets_every_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "db.sqlite3"
    assert migrate(path) == NEWEST
    assert versions(path) == list(range(1, NEWEST + 1))
    assert {"accounts", "entries", "jobs", "schema_version"} <= tables(path)
    assert migrate(path) == NEWEST  # idempotent
    assert versions(path) == list(range(1, NEWEST + 1))


def test_migrations_apply_in_order_each_in_its_own_transaction(tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_a.sql").write_text("CREATE TABLE a (x INTEGER);")
    (directory / "0002_b.sql").write_text(
        "CREATE TABLE b (x INTEGER);\nINSERT INTO a VALUES (1);\nINSERT INTO nowhere VALUES (1);"
    )
    path = tmp_path / "db.sqlite3"
    with pytest.raises(MigrationError, match=r"0002_b\.sql"):
        migrate(path, directory)
    assert versions(path) == [1]
    assert "b" not in tables(path)  # the failed file left nothing behind
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM a").fetchone()[0] == 0
    conn.close()
    (directory / "0002_b.sql").write_text("CREATE TABLE b (x INTEGER);")
    assert migrate(path, directory) == 2


def test_a_database_newer_than_the_code_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    migrate(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO schema_version VALUES (?, 'from_the_future', 'later')", (NEWEST + 1,)
        )
    conn.close()
    with pytest.raises(DatabaseNewerThanCode, match=f"version {NEWEST + 1}"):
        migrate(path)
    with pytest.raises(DatabaseNewerThanCode):
        check_current(path)


async def test_the_store_refuses_a_newer_database_too(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    migrate(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 'x', 'later')", (NEWEST + 1,))
    conn.close()
    with pytest.raises(DatabaseNewerThanCode):
        await SqliteLedger.open(path)


def test_check_current_never_creates_or_migrates(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with pytest.raises(MigrationError, match="sdbot migrate"):
        check_current(path)
    assert not path.exists()
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_a.sql").write_text("CREATE TABLE a (x INTEGER);")
    migrate(path, directory)
    (directory / "0002_b.sql").write_text("CREATE TABLE b (x INTEGER);")
    with pytest.raises(MigrationError, match="older"):
        check_current(path, directory)
    assert versions(path) == [1]


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (["0001_a.sql", "0003_c.sql"], "expected migration number 0002"),
        (["1_a.sql"], "NNNN_name.sql"),
        ([], "no migrations"),
    ],
)
def test_malformed_migration_directories_are_refused(
    tmp_path: Path, names: list[str], problem: str
) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=problem):
        discover(tmp_path)


def test_statements_are_split_outside_triggers_and_strings() -> None:
    script = """
        CREATE TABLE t (x TEXT DEFAULT 'a;b');
        -- a comment; with a semicolon
        CREATE TRIGGER t_no_delete BEFORE DELETE ON t
        BEGIN
            SELECT RAISE(ABORT, 'no; never');
        END;
    """
    statements = [s for s in split_statements(script) if s.strip(";").strip()]
    assert len(statements) == 2
    assert statements[1].endswith("END;")
    with pytest.raises(MigrationError):
        split_statements("INSERT INTO t VALUES ('unterminated)")


def test_migrating_is_safe_while_another_connection_uses_the_database(tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_a.sql").write_text("CREATE TABLE a (x INTEGER);")
    path = tmp_path / "db.sqlite3"
    migrate(path, directory)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM a").fetchone()  # an open read transaction (the bot)
    (directory / "0002_b.sql").write_text("CREATE TABLE b (x INTEGER);")
    try:
        assert migrate(path, directory) == 2
    finally:
        reader.execute("COMMIT")
        reader.close()


def test_concurrent_migrations_apply_each_file_once(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    results: list[int | BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(path))
        except BaseException as error:  # collected and asserted below
            results.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [NEWEST] * 4
    assert versions(path) == list(range(1, NEWEST + 1))
