"""The lab, apart from the runtime: the benchmark, the evaluation, the demo, the mock
upstream, the process helpers the tests use, and the training helpers.

The gateway never imports this package; only the `cachegate` command dispatches to it,
inside the subcommands that need it (tests/test_layout.py checks both).
"""
