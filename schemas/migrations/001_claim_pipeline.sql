-- The read model written by the allocator (the single writer) and read by everyone else.
-- up
CREATE TABLE coupons (
    id              uuid PRIMARY KEY,
    code            text NOT NULL,
    message         text NOT NULL,
    description     text NOT NULL,
    start_time      timestamptz NOT NULL,
    expiry          timestamptz NOT NULL,
    count           integer NOT NULL CHECK (count >= 0),
    per_user_limit  integer NOT NULL CHECK (per_user_limit >= 1),
    daily_rule      boolean NOT NULL,
    issued          integer NOT NULL DEFAULT 0,
    closed          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    created_by      text NOT NULL,
    CHECK (start_time < expiry),
    -- Invariant 1 holds in the database too, whatever the allocator does.
    CHECK (issued >= 0 AND issued <= count)
);
CREATE INDEX coupons_live ON coupons (start_time, expiry) WHERE NOT closed;

CREATE TABLE grants (
    id          uuid PRIMARY KEY,
    coupon_id   uuid NOT NULL REFERENCES coupons (id),
    user_id     text NOT NULL,
    seq         integer NOT NULL CHECK (seq >= 1),
    code        text NOT NULL,
    state       text NOT NULL,
    granted_at  timestamptz NOT NULL,
    request_id  uuid NOT NULL UNIQUE,
    UNIQUE (coupon_id, seq),
    UNIQUE (coupon_id, code)
);
CREATE INDEX grants_by_user ON grants (user_id, granted_at);

-- Every final decision, so any ticket can be answered and any retry gets the first answer.
CREATE TABLE decisions (
    request_id      uuid PRIMARY KEY,
    coupon_id       uuid NOT NULL,
    user_id         text NOT NULL,
    outcome         text NOT NULL,
    reason          text,
    grant_id        uuid,
    decided_at      timestamptz NOT NULL,
    log_partition   integer NOT NULL,
    log_offset      bigint NOT NULL,
    committed_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX decisions_by_coupon ON decisions (coupon_id, outcome);

-- Claims accepted by the allocator but not decided yet: waiting for a unit, or
-- holding one while the person's daily quota is asked for.
CREATE TABLE claim_line (
    request_id      uuid PRIMARY KEY,
    coupon_id       uuid NOT NULL,
    user_id         text NOT NULL,
    at              bigint NOT NULL,
    reply_to        text NOT NULL,
    log_offset      bigint NOT NULL,
    reserving       boolean NOT NULL
);
CREATE INDEX claim_line_order ON claim_line (coupon_id, log_offset);

-- One grant per person per calendar day, owned by the partition of the person's key.
CREATE TABLE user_days (
    user_id     text NOT NULL,
    day         date NOT NULL,
    request_id  uuid NOT NULL,
    coupon_id   uuid NOT NULL,
    PRIMARY KEY (user_id, day)
);

-- The fencing token: a batch commits only if the offset and the epoch are still ours.
CREATE TABLE allocator_partitions (
    topic           text NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint NOT NULL DEFAULT 0,
    epoch           bigint NOT NULL DEFAULT 0,
    owner           text NOT NULL,
    outbox          bytea,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (topic, partition)
);
-- down
DROP TABLE allocator_partitions;
DROP TABLE user_days;
DROP TABLE claim_line;
DROP TABLE decisions;
DROP TABLE grants;
DROP TABLE coupons;
