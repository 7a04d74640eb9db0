"""The allocator's IO shell: the partitions it holds and their life, reading batches from
the log, committing each one's effects with the partition's position in one fenced
transaction, publishing what the batch says. Everything it decides, the core decides."""
