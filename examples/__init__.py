"""Example agents for the gateway (importable from the repository root as ``examples.*``)."""
