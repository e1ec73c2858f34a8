"""LeanCopilot's and LeanDojo-v2's front door: /generate, /encode, /prove, /models and /health."""
