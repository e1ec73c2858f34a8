"""LeanProgress scoring: predicts the proof steps remaining after a candidate tactic."""
