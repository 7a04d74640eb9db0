-- Saved audiences: named lists of people an admin distributes a coupon to. Like `users`,
-- a directory rather than coupon state: the gateway writes it, and a distribution to an
-- audience carries the members it was read with, so the log alone replays it.
-- Versions come from one sequence, so a name deleted and saved again never shows a
-- version it showed before (a preview of the old list cannot pass for the new one).
-- up
CREATE SEQUENCE audience_versions;
CREATE TABLE audiences (
    name        text PRIMARY KEY,
    version     bigint NOT NULL DEFAULT nextval('audience_versions'),
    members     text[] NOT NULL,
    saved_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    saved_by    text NOT NULL
);
-- down
DROP TABLE audiences;
DROP SEQUENCE audience_versions;
