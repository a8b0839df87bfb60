"""Apply ``migrations/NNNN_name.sql`` to a SQLite file, in order, each in one transaction.

A small runner rather than a library: the migration libraries on PyPI either need SQLAlchemy
(Alembic) or keep their own bookkeeping tables and have no notion of "this database is newer
than the code" (yoyo). This one is ~100 lines and does exactly what the bot needs:

* ``schema_version(version, name, applied_at)`` records every applied file;
* each file runs inside ``BEGIN IMMEDIATE … COMMIT`` together with its ``schema_version`` row,
  so a failing file leaves nothing behind, and two processes migrating at once (the bot and
  ``sdbot migrate``) serialise on SQLite's write lock: the second sees the version already
  applied and skips it;
* a database whose version is above the newest file raises
  :class:`~bot.core.errors.DatabaseNewerThanCode` before anything is touched.

Files must not contain ``BEGIN``/``COMMIT`` themselves.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.core.errors import DatabaseNewerThanCode, MigrationError


def _migrations_dir() -> Path:
    """``migrations/`` of the checkout (source or editable install), else the copy a wheel
    installs as data files under ``<prefix>/share/sdbot/migrations``."""
    checkout = Path(__file__).resolve().parents[3] / "migrations"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share/sdbot/migrations"


MIGRATIONS_DIR = _migrations_dir()
_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
BUSY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, checked to be numbered 1, 2, 3… without gaps."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"{migration.path}: expected migration number {expected:04d}")
    if not found:
        raise MigrationError(f"no migrations found in {directory}")
    return found


def split_statements(script: str) -> list[str]:
    """Cut a script at the semicolons that end statements (not those inside triggers)."""
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.rstrip(";").strip():
        raise MigrationError("the script ends with an incomplete statement")
    return statements


def current_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(row[0])


def check_not_newer(db_version: int, migrations: list[Migration]) -> None:
    code_version = migrations[-1].version
    if db_version > code_version:
        raise DatabaseNewerThanCode(db_version, code_version)


def check_current(path: Path, directory: Path = MIGRATIONS_DIR) -> int:
    """Without changing anything: the database's version, if it is exactly the code's."""
    migrations = discover(directory)
    if not path.is_file():
        raise MigrationError(f"There is no database at {path}; run `sdbot migrate` first.")
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        version = current_version(conn)
    finally:
        conn.close()
    check_not_newer(version, migrations)
    if version < migrations[-1].version:
        raise MigrationError(
            f"The database {path} is at schema version {version}, older than this sdbot's "
            f"{migrations[-1].version}; run `sdbot migrate` (or start the bot) first."
        )
    return version


def migrate(path: Path, directory: Path = MIGRATIONS_DIR) -> int:
    """Bring the database at ``path`` (created if missing) to the newest version; return it."""
    migrations = discover(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        _use_wal(conn)
        check_not_newer(current_version(conn), migrations)
        for migration in migrations:
            _apply(conn, migration, migrations)
        return current_version(conn)
    finally:
        conn.close()


def is_busy(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return (
        isinstance(error, sqlite3.OperationalError)
        and code is not None
        and (code & 0xFF == sqlite3.SQLITE_BUSY)
    )


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (persistent: every later connection gets it).

    Switching a new file needs an exclusive lock and fails at once with SQLITE_BUSY, without
    the busy handler, when another process opens it at the same moment: retry until the
    busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if not is_busy(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _apply(conn: sqlite3.Connection, migration: Migration, migrations: list[Migration]) -> None:
    statements = split_statements(migration.path.read_text(encoding="utf-8"))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        # Re-read under the write lock: another process may have applied it meanwhile.
        version = current_version(conn)
        check_not_newer(version, migrations)
        if version >= migration.version:
            conn.execute("ROLLBACK")
            return
        for statement in statements:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, datetime.now(UTC).isoformat()),
        )
        conn.execute("COMMIT")
    except sqlite3.Error as error:
        _rollback(conn)
        raise MigrationError(
            f"{migration.path.name} failed and was rolled back: {error}"
        ) from error
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    # Some errors (a full disk, an I/O error) have already rolled the transaction back.
    if conn.in_transaction:
        conn.execute("ROLLBACK")
