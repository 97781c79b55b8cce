"""The chat history schema, as numbered migrations (PRAGMA user_version = the last one applied).

A fresh database runs every migration from 1, so the upgrade path is the path every install takes.
Never edit a released migration: add the next one.
"""

from __future__ import annotations

import sqlite3

# v1: the first shipped layout (conversations and plain messages).
_V1 = (
    """CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX messages_by_conversation ON messages(conversation_id, id)",
)

# v2: per-conversation settings and system prompt; reasoning, stats, partial flag, model per message.
_V2 = (
    "ALTER TABLE conversations ADD COLUMN settings TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE conversations ADD COLUMN system_prompt TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE messages ADD COLUMN stats TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE messages ADD COLUMN partial INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE messages ADD COLUMN model TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE messages ADD COLUMN updated_at TEXT NOT NULL DEFAULT ''",
    "UPDATE messages SET updated_at = created_at WHERE updated_at = ''",
    "CREATE INDEX conversations_by_update ON conversations(updated_at DESC, id DESC)",
)

# v3: full-text search over messages (only where this SQLite has FTS5; search falls back to LIKE).
_V3_FTS = (
    """CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, reasoning, content='messages', content_rowid='id', tokenize='unicode61'
    )""",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content, reasoning) VALUES (new.id, new.content, new.reasoning);
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content, reasoning)
        VALUES ('delete', old.id, old.content, old.reasoning);
    END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, reasoning ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content, reasoning)
        VALUES ('delete', old.id, old.content, old.reasoning);
        INSERT INTO messages_fts(rowid, content, reasoning) VALUES (new.id, new.content, new.reasoning);
    END""",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
)

SCHEMA_VERSION = 3


def fts5_available(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.kaihe_fts_probe USING fts5(x)")
        conn.execute("DROP TABLE temp.kaihe_fts_probe")
    except sqlite3.OperationalError:
        return False
    return True


def has_fts(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'"
    ).fetchone()
    return row is not None


def migration_statements(version: int, conn: sqlite3.Connection) -> tuple[str, ...]:
    """The statements that bring the schema from version-1 to version."""
    if version == 1:
        return _V1
    if version == 2:
        return _V2
    if version == 3:
        return _V3_FTS if fts5_available(conn) else ()
    raise ValueError(f"no migration to version {version}")


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every missing migration, each in its own transaction. Returns the version found at first."""
    before = int(conn.execute("PRAGMA user_version").fetchone()[0])
    while True:
        conn.execute("BEGIN IMMEDIATE")  # re-read under the write lock: another process may have migrated
        try:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current >= SCHEMA_VERSION:
                conn.execute("COMMIT")
                return before
            for statement in migration_statements(current + 1, conn):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {current + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
