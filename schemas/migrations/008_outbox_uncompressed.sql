-- A partition's outbox is rewritten by every batch (up to its records' worth of JSON
-- messages, some 400 KB for 2,000 claims) and read only after a crash. Compressing it cost
-- PostgreSQL 7 of the 11 ms of CPU such an update took; kept out of line uncompressed it
-- costs 4 (bench: the replay).
-- up
ALTER TABLE allocator_partitions ALTER COLUMN outbox SET STORAGE EXTERNAL;
-- down
ALTER TABLE allocator_partitions ALTER COLUMN outbox SET STORAGE EXTENDED;
