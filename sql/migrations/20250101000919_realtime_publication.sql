-- The publication that logical decoding of published tables reads (see the next migration). It
-- starts empty; realtime.publish adds tables to it when the database captures by decoding.
-- Changes of a partitioned table are published under the table itself, as realtime.publications
-- knows it, not under the partition that stored the row. TRUNCATE is not published.

-- migrate:up
CREATE PUBLICATION plinth_realtime WITH (publish = 'insert, update, delete', publish_via_partition_root = true);

-- migrate:down
DROP PUBLICATION plinth_realtime;
