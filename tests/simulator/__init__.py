"""The simulated Windows fleet: a WS-Management server playing N hosts (test and demo only)."""
