"""The metadata store: SQLite under `$ORUN_HOME` (WAL, versioned migrations).

SQLite calls are blocking, so every call runs on one dedicated worker thread (which also
keeps the connection on the thread that made it). Each write is one transaction, and WAL
with `synchronous=NORMAL` keeps committed apps across `kill -9` of orun.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from orun.state.model import App, AppVersion, version_from_json
from orun.state.records import AuditRow, SshKeyRecord, TokenRecord

T = TypeVar("T")

#: Each entry upgrades the schema by one version; never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE apps (
        id TEXT PRIMARY KEY,
        domain TEXT NOT NULL,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        UNIQUE (domain, path)
    );
    CREATE TABLE versions (
        app_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (app_id, version)
    );
    """,
    # 2: API tokens (only a sha256 of each token is kept) and the audit trail
    """
    CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        scope TEXT NOT NULL,
        created REAL NOT NULL,
        last_used REAL,
        expires REAL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        actor TEXT NOT NULL,
        remote TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        app_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX audit_time ON audit (time);
    """,
    # 3: SSH keys that may git push (issue 17)
    """
    CREATE TABLE ssh_keys (
        name TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        key TEXT NOT NULL,
        scope TEXT NOT NULL,
        created REAL NOT NULL,
        last_used REAL
    );
    """,
)


class Store:
    """Apps and their version history, persisted in SQLite."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="orun-db")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()

        def call() -> T:
            assert self._conn is not None
            return fn(self._conn)

        return await loop.run_in_executor(self._executor, call)

    async def open(self) -> None:
        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
            _migrate(conn)

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, connect)

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(lambda c: c.close())
            self._conn = None
        self._executor.shutdown(wait=True)

    async def schema_version(self) -> int:
        return await self._run(lambda c: int(c.execute("PRAGMA user_version").fetchone()[0]))

    async def load_apps(self) -> list[App]:
        def load(conn: sqlite3.Connection) -> list[App]:
            rows = conn.execute("SELECT data FROM apps ORDER BY created DESC").fetchall()
            return [App.from_json(json.loads(r[0])) for r in rows]

        return await self._run(load)

    async def save(self, apps: Iterable[App], *, new_versions: bool) -> None:
        """Upsert `apps` in one transaction; with `new_versions`, record their versions too."""
        batch = list(apps)

        def save(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                for app in batch:
                    data = json.dumps(app.to_json())
                    conn.execute(
                        "INSERT INTO apps (id, domain, path, kind, data, created, updated)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET domain=excluded.domain,"
                        " path=excluded.path, data=excluded.data, updated=excluded.updated",
                        (app.id, app.path.domain, app.path.path, app.kind, data,
                         app.created, app.updated),
                    )
                    if new_versions:
                        conn.execute(
                            "INSERT OR REPLACE INTO versions (app_id, version, data, created)"
                            " VALUES (?, ?, ?, ?)",
                            (app.id, app.current.version,
                             json.dumps(app.to_json()["current"]), app.current.created),
                        )

        await self._run(save)

    async def delete(self, app_ids: Iterable[str]) -> None:
        ids = list(app_ids)

        def delete(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany("DELETE FROM apps WHERE id = ?", [(i,) for i in ids])
                conn.executemany("DELETE FROM versions WHERE app_id = ?", [(i,) for i in ids])

        await self._run(delete)

    async def prune_versions(self, app_id: str, keep: set[int]) -> int:
        """Forget the app's versions not in `keep`; returns how many went."""

        def prune(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                rows = conn.execute("SELECT version FROM versions WHERE app_id = ?",
                                    (app_id,)).fetchall()
                doomed = [(app_id, v) for (v,) in rows if v not in keep]
                conn.executemany("DELETE FROM versions WHERE app_id = ? AND version = ?",
                                 doomed)
                return len(doomed)

        return await self._run(prune)

    async def referenced_digests(self) -> set[str]:
        """Every source and spec snapshot digest a stored version or app refers to."""

        def load(conn: sqlite3.Connection) -> set[str]:
            out: set[str] = set()
            for query in ("SELECT data FROM versions", "SELECT data FROM apps"):
                for (raw,) in conn.execute(query):
                    data = json.loads(raw)
                    version = data.get("current", data)
                    out.update((version["source_digest"], version["spec_digest"]))
            return out

        return await self._run(load)

    async def versions(self, app_id: str) -> list[AppVersion]:
        def load(conn: sqlite3.Connection) -> list[AppVersion]:
            rows = conn.execute(
                "SELECT data FROM versions WHERE app_id = ? ORDER BY version", (app_id,)
            ).fetchall()
            return [version_from_json(json.loads(raw)) for (raw,) in rows]

        return await self._run(load)

    # -- API tokens ---------------------------------------------------------------

    async def add_token(self, token: TokenRecord) -> bool:
        """Store a new token; False when the name is taken."""

        def add(conn: sqlite3.Connection) -> bool:
            try:
                conn.execute("INSERT INTO tokens (name, hash, scope, created, last_used,"
                             " expires) VALUES (?, ?, ?, ?, ?, ?)",
                             (token.name, token.hash, token.scope, token.created,
                              token.last_used, token.expires))
            except sqlite3.IntegrityError:
                return False
            return True

        return await self._run(add)

    async def tokens(self) -> list[TokenRecord]:
        def load(conn: sqlite3.Connection) -> list[TokenRecord]:
            rows = conn.execute("SELECT name, hash, scope, created, last_used, expires"
                                " FROM tokens ORDER BY created").fetchall()
            return [TokenRecord(*row) for row in rows]

        return await self._run(load)

    async def remove_token(self, name: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount > 0

        return await self._run(remove)

    async def use_token(self, digest: str, now: float) -> TokenRecord | None:
        """The token with this hash, read from the store on every request (so a revoke
        takes effect at once); notes when it was last used (at most once a minute)."""

        def use(conn: sqlite3.Connection) -> TokenRecord | None:
            row = conn.execute("SELECT name, hash, scope, created, last_used, expires"
                               " FROM tokens WHERE hash = ?", (digest,)).fetchone()
            if row is None:
                return None
            token = TokenRecord(*row)
            if token.last_used is None or now - token.last_used > 60:
                conn.execute("UPDATE tokens SET last_used = ? WHERE hash = ?", (now, digest))
            return token

        return await self._run(use)

    # -- SSH keys -------------------------------------------------------------------

    async def add_ssh_key(self, key: SshKeyRecord) -> str | None:
        """Store a new key; None when stored, else what clashes ("name" or
        "fingerprint")."""

        def add(conn: sqlite3.Connection) -> str | None:
            clash = conn.execute("SELECT name, fingerprint FROM ssh_keys WHERE name = ? OR "
                                 "fingerprint = ?", (key.name, key.fingerprint)).fetchone()
            if clash is not None:
                return "name" if clash[0] == key.name else f"fingerprint:{clash[0]}"
            conn.execute("INSERT INTO ssh_keys (name, fingerprint, key, scope, created,"
                         " last_used) VALUES (?, ?, ?, ?, ?, ?)",
                         (key.name, key.fingerprint, key.key, key.scope, key.created,
                          key.last_used))
            return None

        return await self._run(add)

    async def ssh_keys(self) -> list[SshKeyRecord]:
        def load(conn: sqlite3.Connection) -> list[SshKeyRecord]:
            rows = conn.execute("SELECT name, fingerprint, key, scope, created, last_used"
                                " FROM ssh_keys ORDER BY created").fetchall()
            return [SshKeyRecord(*row) for row in rows]

        return await self._run(load)

    async def remove_ssh_key(self, name: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM ssh_keys WHERE name = ?", (name,)).rowcount > 0

        return await self._run(remove)

    async def use_ssh_key(self, fingerprint: str, now: float) -> SshKeyRecord | None:
        """The key with this fingerprint, read at every sign-in (a removed key is out at
        once); notes when it was last used (at most once a minute)."""

        def use(conn: sqlite3.Connection) -> SshKeyRecord | None:
            row = conn.execute("SELECT name, fingerprint, key, scope, created, last_used"
                               " FROM ssh_keys WHERE fingerprint = ?",
                               (fingerprint,)).fetchone()
            if row is None:
                return None
            key = SshKeyRecord(*row)
            if key.last_used is None or now - key.last_used > 60:
                conn.execute("UPDATE ssh_keys SET last_used = ? WHERE fingerprint = ?",
                             (now, fingerprint))
            return key

        return await self._run(use)

    # -- audit trail --------------------------------------------------------------

    async def add_audit(self, rows: list[AuditRow], keep: int) -> None:
        """Append rows in one transaction, then forget all but the newest `keep`."""

        def add(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(
                    "INSERT INTO audit (time, actor, remote, action, target, app_id,"
                    " outcome, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(r.time, r.actor, r.remote, r.action, r.target, r.app_id, r.outcome,
                      r.count) for r in rows])
                conn.execute("DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?",
                             (keep,))

        await self._run(add)

    async def audit(self, *, since: float = 0.0, app_ids: tuple[str, ...] = (),
                    target_glob: str = "", limit: int = 100) -> list[AuditRow]:
        """The newest rows first; with `target_glob`, rows whose target matches it
        (SQLite GLOB) or whose app is one of `app_ids`."""

        def load(conn: sqlite3.Connection) -> list[AuditRow]:
            sql = ("SELECT time, actor, remote, action, target, app_id, outcome, count"
                   " FROM audit WHERE time >= ?")
            args: list[object] = [since]
            if target_glob:
                marks = ", ".join("?" * len(app_ids))
                sql += f" AND (target GLOB ? OR app_id IN ({marks}))"
                args += [target_glob, *app_ids]
            sql += " ORDER BY id DESC LIMIT ?"
            args.append(limit)
            return [AuditRow(*row) for row in conn.execute(sql, args).fetchall()]

        return await self._run(load)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolling back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration past `PRAGMA user_version`, each in its own transaction."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"metadata store schema version {current} is newer than this orun "
            f"({len(MIGRATIONS)}); upgrade orun"
        )
    for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
