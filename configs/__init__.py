"""The shipped configuration files: default.yaml (every knob, at its default) and
pricing.yaml (USD per 1M tokens by model). Package data, read with importlib.resources."""
