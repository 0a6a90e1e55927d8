-- 0003_message_deliveries: delivery records in a table of their own.
--
-- Every message is marked delivered soon after its insert (store.Marker,
-- batched). As an UPDATE of messages that cost a new version of the whole
-- row and, since the rows of one batch share a page that has no room for
-- their new versions, an entry in every index of messages (half the
-- updates measured were not HOT). A delivery is now one narrow row here:
-- a message is delivered when messages.delivered is set (MarkRead still
-- sets it: reading implies delivery) or its id is in this table.
-- Rows written before this migration keep their delivered column.
CREATE TABLE message_deliveries (
    id bigint PRIMARY KEY
);
