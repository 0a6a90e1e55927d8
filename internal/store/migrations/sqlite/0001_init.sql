-- 0001_init: users and the one-to-one chat's messages (SQLite twin of
-- migrations/postgres/0001_init.sql).
--
-- Times are INTEGER microseconds since the Unix epoch, UTC. A conversation
-- is (peer_lo, peer_hi) = (min, max) of its two uids in byte order (SQLite's
-- BINARY collation). Bodies are raw text, never HTML. STRICT tables reject
-- values of the wrong type.

CREATE TABLE users (
    uid        TEXT    NOT NULL PRIMARY KEY,
    nickname   TEXT    NOT NULL DEFAULT '',
    avatar_url TEXT    NOT NULL DEFAULT '',
    role       TEXT    NOT NULL DEFAULT 'visitor'
                       CONSTRAINT users_role CHECK (role IN ('visitor', 'agent')),
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    updated_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT;

-- No foreign keys to users: visitors may be uids nobody registered.
-- AUTOINCREMENT: ids are never reused, as with PostgreSQL's identity.
CREATE TABLE messages (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    from_uid   TEXT    NOT NULL,
    to_uid     TEXT    NOT NULL,
    peer_lo    TEXT    NOT NULL,
    peer_hi    TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    kind       INTEGER NOT NULL DEFAULT 1
                       CONSTRAINT messages_kind CHECK (kind IN (1, 2)),
    cmid       TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    delivered  INTEGER NOT NULL DEFAULT 0
                       CONSTRAINT messages_delivered CHECK (delivered IN (0, 1)),
    read_at    INTEGER NULL,
    CONSTRAINT messages_peers CHECK (
        ((peer_lo = from_uid AND peer_hi = to_uid) OR (peer_lo = to_uid AND peer_hi = from_uid))
        AND peer_lo <= peer_hi)
) STRICT;

CREATE INDEX messages_conversation ON messages (peer_lo, peer_hi, id);

CREATE INDEX messages_unread ON messages (to_uid, from_uid, id) WHERE read_at IS NULL;

CREATE UNIQUE INDEX messages_cmid ON messages (from_uid, cmid) WHERE cmid <> '';
