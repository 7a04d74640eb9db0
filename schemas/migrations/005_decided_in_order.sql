-- Each coupon's decisions numbered in the order they were made, and the count on the coupon:
-- a gateway holding decisions 1..coupons.decided holds every one, so it can answer a retried
-- request on a coupon that is over without asking PostgreSQL each time (gateway/retries.py).
-- Decisions about no coupon (an unknown id) have no number.
-- up
ALTER TABLE decisions ADD COLUMN coupon_seq integer;
UPDATE decisions d SET coupon_seq = n.seq
FROM (SELECT request_id,
             row_number() OVER (PARTITION BY coupon_id
                                ORDER BY committed_at, log_partition, log_offset) AS seq
      FROM decisions WHERE coupon_id IN (SELECT id FROM coupons)) n
WHERE d.request_id = n.request_id;
CREATE UNIQUE INDEX decisions_in_order ON decisions (coupon_id, coupon_seq)
    WHERE coupon_seq IS NOT NULL;
ALTER TABLE coupons ADD COLUMN decided integer NOT NULL DEFAULT 0;
UPDATE coupons c SET decided = (SELECT count(*) FROM decisions d WHERE d.coupon_id = c.id);
-- down
ALTER TABLE coupons DROP COLUMN decided;
DROP INDEX decisions_in_order;
ALTER TABLE decisions DROP COLUMN coupon_seq;
