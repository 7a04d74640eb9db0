-- Codes, redemption, holds and the line, campaign management, the audit trail, users.
-- up
ALTER TABLE coupons
    ADD COLUMN hold_seconds integer NOT NULL DEFAULT 0 CHECK (hold_seconds >= 0),
    ADD COLUMN release_on_disconnect boolean NOT NULL DEFAULT false,
    ADD COLUMN lock_seconds integer NOT NULL DEFAULT 300 CHECK (lock_seconds >= 1),
    ADD COLUMN redemptions_per_grant integer NOT NULL DEFAULT 1 CHECK (redemptions_per_grant >= 1),
    ADD COLUMN redemptions_per_user integer NOT NULL DEFAULT 0 CHECK (redemptions_per_user >= 0),
    ADD COLUMN code_source text NOT NULL DEFAULT 'pattern'
        CHECK (code_source IN ('pattern', 'uploaded')),
    ADD COLUMN code_pattern text NOT NULL DEFAULT '{random:5}-{random:5}',
    ADD COLUMN code_alphabet text NOT NULL DEFAULT 'crockford',
    ADD COLUMN held integer NOT NULL DEFAULT 0 CHECK (held >= 0),
    ADD COLUMN codes_left integer CHECK (codes_left >= 0);

-- A distribution makes many grants for one request.
ALTER TABLE grants DROP CONSTRAINT grants_request_id_key;
CREATE INDEX grants_by_request ON grants (request_id);
ALTER TABLE grants
    ADD COLUMN source text NOT NULL DEFAULT 'claim'
        CHECK (source IN ('claim', 'assign', 'distribution')),
    ADD COLUMN deadline timestamptz,
    ADD COLUMN lock_id uuid,
    ADD COLUMN redemptions integer NOT NULL DEFAULT 0 CHECK (redemptions >= 0),
    ADD CONSTRAINT grants_state_known
        CHECK (state IN ('held', 'assigned', 'locked', 'redeemed', 'released', 'revoked'));
-- What a restarted allocator reloads: grants with a deadline.
CREATE INDEX grants_timed ON grants (coupon_id) WHERE state IN ('held', 'locked');

-- What a decision said beyond its outcome (a grant as it was, a plan), for retries.
ALTER TABLE decisions ADD COLUMN detail jsonb;

-- The audit trail: every transition of every grant, and the log record that caused it.
CREATE TABLE grant_events (
    id              bigserial PRIMARY KEY,
    grant_id        uuid NOT NULL,
    coupon_id       uuid NOT NULL,
    before          text,
    after           text NOT NULL,
    cause           text NOT NULL,
    request_id      uuid NOT NULL,
    log_partition   integer NOT NULL,
    log_offset      bigint NOT NULL,
    at              timestamptz NOT NULL
);
CREATE INDEX grant_events_by_grant ON grant_events (grant_id, id);

-- Codes an admin uploaded, handed out in position order; grant_id once handed out.
CREATE TABLE coupon_codes (
    coupon_id   uuid NOT NULL REFERENCES coupons (id),
    position    integer NOT NULL,
    code        text NOT NULL,
    grant_id    uuid,
    PRIMARY KEY (coupon_id, position),
    UNIQUE (coupon_id, code)
);
CREATE INDEX coupon_codes_unused ON coupon_codes (coupon_id, position) WHERE grant_id IS NULL;

-- People, with display names; claims do not need a row here first.
CREATE TABLE users (
    id              text PRIMARY KEY,
    display_name    text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- down
DROP TABLE users;
DROP TABLE coupon_codes;
DROP TABLE grant_events;
ALTER TABLE decisions DROP COLUMN detail;
DROP INDEX grants_timed;
ALTER TABLE grants
    DROP CONSTRAINT grants_state_known,
    DROP COLUMN redemptions,
    DROP COLUMN lock_id,
    DROP COLUMN deadline,
    DROP COLUMN source;
DROP INDEX grants_by_request;
ALTER TABLE grants ADD CONSTRAINT grants_request_id_key UNIQUE (request_id);
ALTER TABLE coupons
    DROP COLUMN codes_left,
    DROP COLUMN held,
    DROP COLUMN code_alphabet,
    DROP COLUMN code_pattern,
    DROP COLUMN code_source,
    DROP COLUMN redemptions_per_user,
    DROP COLUMN redemptions_per_grant,
    DROP COLUMN lock_seconds,
    DROP COLUMN release_on_disconnect,
    DROP COLUMN hold_seconds;
