-- 0002_desk: the customer-service desk (SQLite twin of
-- migrations/postgres/0002_desk.sql; times are INTEGER microseconds since
-- the Unix epoch, UTC).
--
-- SQLite cannot change a CHECK constraint in place, so messages is rebuilt
-- (SQLite's documented 12-step procedure, inside the migration's
-- transaction): same columns plus conv, kind 3 allowed. Ids are copied, so
-- AUTOINCREMENT's sequence continues after the largest.

CREATE TABLE messages_new (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    from_uid   TEXT    NOT NULL,
    to_uid     TEXT    NOT NULL,
    peer_lo    TEXT    NOT NULL,
    peer_hi    TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    kind       INTEGER NOT NULL DEFAULT 1
                       CONSTRAINT messages_kind CHECK (kind IN (1, 2, 3)),
    cmid       TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    delivered  INTEGER NOT NULL DEFAULT 0
                       CONSTRAINT messages_delivered CHECK (delivered IN (0, 1)),
    read_at    INTEGER NULL,
    conv       TEXT    NOT NULL DEFAULT '',
    CONSTRAINT messages_peers CHECK (
        ((peer_lo = from_uid AND peer_hi = to_uid) OR (peer_lo = to_uid AND peer_hi = from_uid))
        AND peer_lo <= peer_hi),
    CONSTRAINT messages_conv CHECK (conv = '' OR conv = from_uid OR conv = to_uid)
) STRICT;

INSERT INTO messages_new (id, from_uid, to_uid, peer_lo, peer_hi, body, kind, cmid, created_at, delivered, read_at)
SELECT id, from_uid, to_uid, peer_lo, peer_hi, body, kind, cmid, created_at, delivered, read_at FROM messages;

DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;

CREATE INDEX messages_conversation ON messages (peer_lo, peer_hi, id);
CREATE INDEX messages_unread ON messages (to_uid, from_uid, id) WHERE read_at IS NULL;
CREATE UNIQUE INDEX messages_cmid ON messages (from_uid, cmid) WHERE cmid <> '';
CREATE INDEX messages_desk ON messages (conv, id) WHERE conv <> '';

CREATE TABLE desk_conversations (
    visitor     TEXT    NOT NULL PRIMARY KEY,
    state       TEXT    NOT NULL DEFAULT 'new'
                        CONSTRAINT desk_conversations_state CHECK (state IN ('new', 'queued', 'open', 'closed')),
    agent       TEXT    NULL,
    last_agent  TEXT    NOT NULL DEFAULT '',
    queued_at   INTEGER NULL,
    assigned_at INTEGER NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    last_msg_id INTEGER NOT NULL DEFAULT 0,
    page_url    TEXT    NOT NULL DEFAULT '',
    referrer    TEXT    NOT NULL DEFAULT '',
    user_agent  TEXT    NOT NULL DEFAULT '',
    email       TEXT    NOT NULL DEFAULT '',
    CONSTRAINT desk_conversations_agent CHECK ((state = 'open') = (agent IS NOT NULL)),
    CONSTRAINT desk_conversations_queued CHECK ((state = 'queued') = (queued_at IS NOT NULL))
) STRICT;

CREATE INDEX desk_conversations_queue ON desk_conversations (queued_at, visitor) WHERE state = 'queued';
CREATE INDEX desk_conversations_agent ON desk_conversations (agent, last_msg_id) WHERE state = 'open';
CREATE INDEX desk_conversations_activity ON desk_conversations (last_msg_id);

CREATE TABLE desk_agents (
    uid              TEXT    NOT NULL PRIMARY KEY,
    presence         TEXT    NOT NULL DEFAULT 'offline'
                             CONSTRAINT desk_agents_presence CHECK (presence IN ('online', 'away', 'offline')),
    lost_at          INTEGER NULL,
    last_assigned_at INTEGER NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE desk_images (
    id           TEXT    NOT NULL PRIMARY KEY,
    owner        TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    data         BLOB    NOT NULL,
    thumb_type   TEXT    NOT NULL,
    thumb        BLOB    NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE desk_canned (
    shortcut   TEXT    NOT NULL PRIMARY KEY,
    body       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
