"""The gateway: HTTP in and out, the stores, the ledger; the request path is gateway/server.py."""
