"""`coupons`, the command line: the one package above every other, since it starts them all
(the parts, the local stack, the benchmark). Nothing imports it."""
