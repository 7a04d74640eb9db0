"""Fault tests break the stack on purpose. Those that kill, freeze or restart parts use the
suite's broker and PostgreSQL, each test on a stack of its own; test_outages.py, which
stops and freezes the broker and PostgreSQL themselves, has a pair of its own
(`running_infra`), and test_cluster.py a three-node cluster."""
