"""Config files: errors name the file and the field; routing-policy rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings

BASE = """
data_dir: {data}
pools:
  - {{name: small, model: m-small, replicas: ["http://127.0.0.1:9"], max_context: 4096,
      price: {{input: 0.1, output: 0.2}}}}
  - {{name: large, model: m-large, replicas: ["http://127.0.0.1:9"], max_context: 8192,
      price: {{input: 1, output: 2}}}}
routing:
  policies:
    - {policy}
"""


def _load(tmp_path: Path, policy: str) -> object:
    path = tmp_path / "frugate.yaml"
    path.write_text(BASE.format(data=tmp_path, policy=policy))
    return load_settings(path, env={})


def test_a_tracked_share_policy_loads(tmp_path: Path) -> None:
    s = _load(tmp_path, "{name: auto, small: small, large: large, large_share: 0.3, "
                        "track_share: true, track_window: 500}")
    policy = s.routing.policies[0]  # type: ignore[attr-defined]
    assert policy.track_share and policy.track_window == 500


@pytest.mark.parametrize(("policy", "message"), [
    ("{name: q, small: small, large: large, quality: 0.9, track_share: true}",
     "track_share needs large_share"),
    ("{name: both, small: small, large: large, large_share: 0.3, quality: 0.9}",
     "exactly one of large_share or quality"),
    ("{name: w, small: small, large: large, large_share: 0.3, track_window: 10}",
     "routing.policies.0.track_window"),
    ("{name: typo, small: small, large: large, large_share: 0.3, track: true}",
     "routing.policies.0.track"),
])
def test_bad_policies_are_refused_naming_file_and_field(
        tmp_path: Path, policy: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, policy)
    assert str(tmp_path / "frugate.yaml") in str(info.value)
    assert message in str(info.value)


def test_check_config_describes_pools_and_policies(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    path = tmp_path / "frugate.yaml"
    path.write_text(BASE.format(data=tmp_path, policy=(
        "{name: auto, small: small, large: large, large_share: 0.3, track_share: true, "
        "cascade_min_logprob: -0.7}")))
    res = CliRunner().invoke(app, ["check-config", str(path)])
    assert res.exit_code == 0, res.output
    assert "pool small: model m-small, 1 replica(s), context 4096" in res.output
    assert ("routing policy auto: small | large, large_share=0.3 (tracked over 2000 scores), "
            "cascade below mean logprob -0.7") in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.format(data=tmp_path, policy="{name: q, small: small, large: large}"))
    res = CliRunner().invoke(app, ["check-config", str(bad)])
    assert res.exit_code != 0
