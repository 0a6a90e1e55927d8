-- 0002_desk: the customer-service desk.
--
-- A desk conversation is one visitor's thread with the desk, whichever
-- agents serve it: its messages carry conv = the visitor's uid (plain chat
-- messages have conv ''), so history follows a transfer. Kind 3 is a system
-- line, whose body is {"code":...,"params":{...}} and which clients render
-- in their own language. Every desk table is keyed by uid; no foreign keys,
-- as for messages.

ALTER TABLE messages ADD COLUMN conv text NOT NULL DEFAULT '';
ALTER TABLE messages DROP CONSTRAINT messages_kind;
ALTER TABLE messages ADD CONSTRAINT messages_kind CHECK (kind IN (1, 2, 3));
ALTER TABLE messages ADD CONSTRAINT messages_conv CHECK (conv = '' OR conv = from_uid OR conv = to_uid);

-- A desk conversation's history and its unread messages are one index range.
CREATE INDEX messages_desk ON messages (conv, id) WHERE conv <> '';

-- One row per visitor. state: new (seen, never wrote), queued (waiting for
-- an agent), open (agent serves it), closed. agent is set exactly while
-- open; last_agent is who served it last, preferred when the visitor comes
-- back. last_msg_id orders the agents' list by last activity.
CREATE TABLE desk_conversations (
    visitor     text        PRIMARY KEY,
    state       text        NOT NULL DEFAULT 'new'
                            CONSTRAINT desk_conversations_state CHECK (state IN ('new', 'queued', 'open', 'closed')),
    agent       text        NULL,
    last_agent  text        NOT NULL DEFAULT '',
    queued_at   timestamptz NULL,
    assigned_at timestamptz NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    last_msg_id bigint      NOT NULL DEFAULT 0,
    page_url    text        NOT NULL DEFAULT '',
    referrer    text        NOT NULL DEFAULT '',
    user_agent  text        NOT NULL DEFAULT '',
    email       text        NOT NULL DEFAULT '',
    CONSTRAINT desk_conversations_agent CHECK ((state = 'open') = (agent IS NOT NULL)),
    CONSTRAINT desk_conversations_queued CHECK ((state = 'queued') = (queued_at IS NOT NULL))
);

-- The queue, oldest first.
CREATE INDEX desk_conversations_queue ON desk_conversations (queued_at, visitor) WHERE state = 'queued';
-- Each agent's open conversations (load counts, Mine).
CREATE INDEX desk_conversations_agent ON desk_conversations (agent, last_msg_id) WHERE state = 'open';
-- The list by last activity.
CREATE INDEX desk_conversations_activity ON desk_conversations (last_msg_id);

-- Agents' presence. lost_at is when the agent was first seen without any
-- connection; after the grace period it goes offline.
CREATE TABLE desk_agents (
    uid              text        PRIMARY KEY,
    presence         text        NOT NULL DEFAULT 'offline'
                                 CONSTRAINT desk_agents_presence CHECK (presence IN ('online', 'away', 'offline')),
    lost_at          timestamptz NULL,
    last_assigned_at timestamptz NULL,
    updated_at       timestamptz NOT NULL
);

-- Uploaded images and their thumbnails.
CREATE TABLE desk_images (
    id           text        PRIMARY KEY,
    owner        text        NOT NULL,
    content_type text        NOT NULL,
    data         bytea       NOT NULL,
    thumb_type   text        NOT NULL,
    thumb        bytea       NOT NULL,
    width        integer     NOT NULL,
    height       integer     NOT NULL,
    created_at   timestamptz NOT NULL
);

-- Canned replies agents insert by typing /shortcut.
CREATE TABLE desk_canned (
    shortcut   text        PRIMARY KEY,
    body       text        NOT NULL,
    updated_at timestamptz NOT NULL
);
