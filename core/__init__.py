"""Plain types: typed configuration, the error hierarchy, and the data that crosses a process boundary.

The lowest layer. It imports no other LeanServe package, and neither Ray nor vLLM (`make lint` checks it).
"""
