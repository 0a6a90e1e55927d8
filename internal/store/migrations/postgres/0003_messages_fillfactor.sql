-- 0003_messages_fillfactor: room on each page for the delivery record.
--
-- Every message is updated once soon after its insert (delivered = true,
-- batched by store.Marker). No index covers delivered, so the update can
-- be HOT — the new row version stays on its page and no index gets an
-- entry — but only if the page has room for it; at the default fillfactor
-- of 100 the inserts fill each page first, and most updates moved the row
-- to another page and wrote an entry into every index. Inserts now stop at
-- 85% of a page (pages written from now on; older ones keep their layout).
ALTER TABLE messages SET (fillfactor = 85);
