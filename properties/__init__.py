"""Simulation, properties, the real-Redis tier, the CLI and reports (see README)."""
