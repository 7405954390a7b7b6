"""Configuration: the shipped file, and counts that would stop the gateway refused up front."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError, load_config

SHIPPED = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


def test_the_shipped_file_states_the_defaults(tmp_path, monkeypatch):
    """configs/default.yaml is where users read the defaults: it must not drift from them.
    Read from another directory, it still finds the shipped prices."""
    monkeypatch.chdir(tmp_path)
    shipped, defaults = load_config(SHIPPED, environ={}), Config()
    differ = [
        f.name
        for f in dataclasses.fields(Config)
        if getattr(shipped, f.name) != getattr(defaults, f.name)
    ]
    assert differ == []
    assert shipped.pricing_file.is_file()


@pytest.mark.parametrize("name", ["WORKERS", "THREADS", "IDLE_THREADS", "BATCH_MAX"])
def test_a_count_below_one_is_refused_with_its_name(name):
    with pytest.raises(ConfigError, match=rf"semantic\.{name.lower()}: must be at least 1"):
        load_config(environ={f"CACHEGATE_SEMANTIC_{name}": "0"})
