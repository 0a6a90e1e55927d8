-- 0001_init: users and the one-to-one chat's messages.
--
-- A conversation is the unordered pair of its two uids, stored as
-- (peer_lo, peer_hi) = (least, greatest) in byte order (COLLATE "C"), so
-- both directions of a chat share one index range and nobody else's
-- messages can match it. Bodies are raw text, never HTML.

CREATE TABLE users (
    uid        text        PRIMARY KEY,
    nickname   text        NOT NULL DEFAULT '',
    avatar_url text        NOT NULL DEFAULT '',
    role       text        NOT NULL DEFAULT 'visitor'
                           CONSTRAINT users_role CHECK (role IN ('visitor', 'agent')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- No foreign keys to users: visitors may be uids nobody registered.
CREATE TABLE messages (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_uid   text        NOT NULL,
    to_uid     text        NOT NULL,
    peer_lo    text        NOT NULL,
    peer_hi    text        NOT NULL,
    body       text        NOT NULL,
    kind       smallint    NOT NULL DEFAULT 1
                           CONSTRAINT messages_kind CHECK (kind IN (1, 2)),
    cmid       text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered  boolean     NOT NULL DEFAULT false,
    read_at    timestamptz NULL,
    CONSTRAINT messages_peers CHECK (
        ((peer_lo = from_uid AND peer_hi = to_uid) OR (peer_lo = to_uid AND peer_hi = from_uid))
        AND peer_lo COLLATE "C" <= peer_hi COLLATE "C")
);

-- A conversation's newest N before a cursor (or oldest N after one) is one
-- index range scan.
CREATE INDEX messages_conversation ON messages (peer_lo, peer_hi, id);

-- Unread counts per sender and mark-read scan only unread rows.
CREATE INDEX messages_unread ON messages (to_uid, from_uid, id) WHERE read_at IS NULL;

-- A client's retry of (from_uid, cmid) finds the stored message.
CREATE UNIQUE INDEX messages_cmid ON messages (from_uid, cmid) WHERE cmid <> '';
