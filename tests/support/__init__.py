"""What the integration, fault and unit tests share: the stack fixtures, clients, loads and
the in-memory log. Test modules import from here, never from each other."""
