"""Profiles, flag parsing and the command line (without starting a server)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from workers.sim import PROFILES, SimConfig
from workers.sim.cli import sim_worker
from workers.sim.config import parse_output_tokens


def test_profiles_and_overrides() -> None:
    assert SimConfig.from_profile("fast").instant
    large = SimConfig.from_profile("realistic-large", spec_k=0, itl_ms=None)
    assert not large.instant and large.spec_k == 0
    assert large.itl_ms == PROFILES["realistic-large"]["itl_ms"]  # None leaves the profile value
    with pytest.raises(ValueError, match="unknown profile"):
        SimConfig.from_profile("huge")
    with pytest.raises(ValueError, match="KV cache"):
        SimConfig.from_profile("fast", max_model_len=100_000, num_gpu_blocks=100)


def test_config_round_trips_through_json_for_subprocesses() -> None:
    config = SimConfig.from_profile("realistic-small", model="m", output_tokens=(3, 9), seed=4)
    assert SimConfig.from_dict(config.to_dict()) == config


def test_output_tokens_flag() -> None:
    assert parse_output_tokens("64") == (64, 64)
    assert parse_output_tokens("16:128") == (16, 128)


def test_cli_help_and_bad_values() -> None:
    app = typer.Typer()
    app.command()(sim_worker)
    runner = CliRunner()
    help_text = runner.invoke(app, ["--help"]).output
    assert "--spec-alpha" in help_text and "realistic-large" in help_text
    bad = runner.invoke(app, ["--profile", "nope"])
    assert bad.exit_code == 2 and "unknown profile" in bad.output
