-- Which log a partition's stored position belongs to (allocator/which_log.py): the mark the
-- allocator wrote into it, and the base added to its offsets to make positions.
-- up
ALTER TABLE allocator_partitions
    ADD COLUMN log_id uuid,
    ADD COLUMN log_mark bigint,
    ADD COLUMN log_base bigint NOT NULL DEFAULT 0,
    ADD COLUMN log_started_at timestamptz;
-- down
ALTER TABLE allocator_partitions
    DROP COLUMN log_started_at,
    DROP COLUMN log_base,
    DROP COLUMN log_mark,
    DROP COLUMN log_id;
