-- A coupon closed with revocation revokes its live grants a slice at a time, each slice a
-- command of the log (allocator/coupons.py): while slices remain, its grants are refused
-- as revoked whatever their row still says, and an allocator that starts again must know.
-- up
ALTER TABLE coupons ADD COLUMN revoking boolean NOT NULL DEFAULT false;
-- down
ALTER TABLE coupons DROP COLUMN revoking;
