"""Pure decisions: request body + headers + config (+ `now`) in, a decision out. No I/O."""
