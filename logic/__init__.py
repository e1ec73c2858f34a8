"""Pure logic over the plain types of `core`: prompts, tactic extraction, ranking, deduplication, validation,
auth decisions and the per-bundle generation pipelines. No Ray, no vLLM, no torch (`make lint` checks it).
"""
