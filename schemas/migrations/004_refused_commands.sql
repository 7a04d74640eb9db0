-- Commands the allocator refused because they hold what cannot be stored: found by its core
-- (schemas/storable.py) or by PostgreSQL refusing their batch (allocator/isolation.py).
-- Replay reads it, so that the refusals PostgreSQL made are made again (invariant 6).
-- up
CREATE TABLE refused_commands (
    log_partition   integer NOT NULL,
    log_offset      bigint NOT NULL,
    request_id      uuid,
    fault           text NOT NULL,
    refused_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (log_partition, log_offset)
);
-- down
DROP TABLE refused_commands;
