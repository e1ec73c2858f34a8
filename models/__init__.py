"""Engines and backends, prompts and tactic extraction."""
