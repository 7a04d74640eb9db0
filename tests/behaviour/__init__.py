"""The behaviour suite: each scenario written once (`scenarios.py`), in the words of
`driver.py`, and run by two drivers: on the decision core in memory, in virtual time
(`in_memory.py`, by tests/unit/test_behaviour.py), and over HTTP on the real stack, in real
time (`over_http.py`, by tests/integration/test_behaviour.py)."""
