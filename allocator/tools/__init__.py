"""The analysts' tools over the allocator's core: `coupons replay` (the database proven
from the log), `--what-if` (one coupon's settings changed), and a cluster of partitions'
logs in memory that drives real cores as the broker and allocators would."""
