"""Pool specs, rendering and the `frugate worker` commands (fast; no vLLM needed)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import worker
from workers.vllm import (
    GATEWAY_FLAGS,
    LaunchError,
    PoolSpec,
    PoolSpecError,
    argv,
    check_launch,
    compose_service,
    container,
    find_pool,
    k8s_objects,
    load_pool,
    load_pools,
    replica_env,
    server_args,
    shell_command,
)

runner = CliRunner()


def _spec(**overrides: object) -> PoolSpec:
    base: dict[str, object] = {
        "name": "p", "model": "org/m", "max_model_len": 4096, "gpu_memory_utilization": 0.9,
        "speculative": {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3},
    }
    base.update(overrides)
    return PoolSpec.model_validate(base)


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_shipped_pools_load_and_cover_both_speculation_kinds() -> None:
    pools = {p.name: p for p in load_pools()}
    assert {"small", "large", "tiny-cpu"} <= set(pools)
    small, large = pools["small"], pools["large"]
    assert small.speculative is not None and small.speculative.method == "ngram"
    assert large.speculative is not None and large.speculative.method in {"eagle3", "draft_model"}
    assert large.speculative.model
    assert large.tensor_parallel_size > small.tensor_parallel_size
    for pool in (small, large):
        assert pool.device == "gpu" and pool.enable_prefix_caching
        assert pool.gpu_memory_utilization is not None


def test_server_args_carry_every_field_and_the_gateway_flags() -> None:
    spec = find_pool("small")
    args = server_args(spec, 0)
    assert _flag(args, "--model") == spec.model
    assert _flag(args, "--tensor-parallel-size") == str(spec.tensor_parallel_size)
    assert _flag(args, "--max-model-len") == str(spec.max_model_len)
    assert float(_flag(args, "--gpu-memory-utilization")) == spec.gpu_memory_utilization
    assert "--enable-prefix-caching" in args
    assert spec.speculative is not None
    assert json.loads(_flag(args, "--speculative-config")) == spec.speculative.model_dump(
        exclude_none=True)
    for flag in GATEWAY_FLAGS:
        assert flag in args


def test_plain_replicas_drop_only_the_speculative_config() -> None:
    spec = _spec(replicas=3, speculative_replicas=1)
    first, last = server_args(spec, 0), server_args(spec, 2)
    assert "--speculative-config" in first and "--speculative-config" not in last
    assert [a for a in first if a != _flag(first, "--speculative-config")
            and a not in {"--speculative-config", "8000"}] == [a for a in last if a != "8002"]


def test_replicas_get_their_own_port_and_gpus() -> None:
    spec = _spec(tensor_parallel_size=2, replicas=3, port_base=9000)
    assert _flag(server_args(spec, 2), "--port") == "9002"
    assert replica_env(spec, 2)["CUDA_VISIBLE_DEVICES"] == "4,5"
    assert shlex.split(shell_command(spec, 1))[0] == "CUDA_VISIBLE_DEVICES=2,3"
    assert shlex.split(shell_command(spec, 1))[1:] == argv(spec, 1)
    with pytest.raises(PoolSpecError, match=r"replicas 0\.\.2"):
        server_args(spec, 3)


def test_prefix_caching_off_renders_the_negative_flag() -> None:
    args = server_args(_spec(enable_prefix_caching=False))
    assert "--no-enable-prefix-caching" in args and "--enable-prefix-caching" not in args


@pytest.mark.parametrize(("overrides", "message"), [
    ({"speculative": {"method": "eagle3", "num_speculative_tokens": 3}}, "drafter"),
    ({"speculative": {"method": "ngram", "num_speculative_tokens": 3}}, "prompt_lookup_max"),
    ({"speculative": {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 2,
                      "prompt_lookup_min": 3}}, "prompt_lookup_min"),
    ({"speculative": {"method": "eagle3", "model": "d", "num_speculative_tokens": 3,
                      "num_speculative_tokens_per_batch_size": [[2, 8, 3]]}}, "batch 1"),
    ({"speculative": {"method": "eagle3", "model": "d", "num_speculative_tokens": 3,
                      "num_speculative_tokens_per_batch_size": [[1, 8, 4]]}}, "sorted"),
    ({"gpu_memory_utilization": None}, "gpu_memory_utilization"),
    ({"gpu_memory_utilization": 1.5}, "less than or equal"),
    ({"replicas": 2, "speculative_replicas": 3}, "exceed"),
    ({"extra_args": ["--max-model-len=8192"]}, "repeats --max-model-len"),
    ({"extra_args": ["--speculative-config", "{}"]}, "repeats --speculative-config"),
    ({"name": "Bad_Name"}, "pattern"),
    ({"surprise": 1}, "Extra inputs"),
])
def test_invalid_specs_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(**overrides)


def test_load_pool_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model: m\nmax_model_len: -1\ngpu_memory_utilization: 0.9\n")
    with pytest.raises(PoolSpecError, match=r"broken.yaml: max_model_len"):
        load_pool(path)
    path.write_text("- not a mapping\n")
    with pytest.raises(PoolSpecError, match="mapping"):
        load_pool(path)


def test_pool_name_defaults_to_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "mid.yaml"
    path.write_text("model: m\nmax_model_len: 10\ngpu_memory_utilization: 0.5\n")
    assert find_pool(str(path)).name == "mid"
    assert find_pool("mid", pool_dir=tmp_path).name == "mid"
    with pytest.raises(PoolSpecError, match="known: mid"):
        find_pool("other", pool_dir=tmp_path)


def test_container_forms_share_the_argv() -> None:
    spec = find_pool("large")
    c = container(spec, 1)
    assert c["command"] == spec.entrypoint
    assert c["args"] == server_args(spec, 1, port=spec.port_base)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == str(spec.tensor_parallel_size)
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    svc = compose_service(spec, 0)
    assert [*svc["entrypoint"], *svc["command"]] == [*spec.entrypoint, *c["args"]]
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": spec.tensor_parallel_size,
                        "capabilities": ["gpu"]}]


def test_k8s_objects_pair_a_deployment_and_service_per_replica() -> None:
    spec = find_pool("small")
    objects = k8s_objects(spec)
    kinds = ("Deployment", "Service")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        (kind, f"vllm-small-{i}") for i in range(spec.replicas) for kind in kinds]
    for deployment, service in zip(objects[::2], objects[1::2], strict=True):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    speculating = [o["metadata"]["labels"]["frugate.dev/speculative"] for o in objects[::2]]
    assert speculating == ["true", "true", "false"]


def test_launch_refuses_without_gpus() -> None:
    spec = find_pool("large")
    with pytest.raises(LaunchError, match="needs NVIDIA GPUs"):
        check_launch(spec, 0, gpus=None)
    with pytest.raises(LaunchError, match=r"GPUs \[4, 5, 6, 7\].*shows 4 GPU"):
        check_launch(spec, 1, gpus=4)


def test_launch_checks_the_entrypoint_exists() -> None:
    spec = _spec(entrypoint=["no-such-vllm-binary", "serve"])
    with pytest.raises(LaunchError, match="not on PATH"):
        check_launch(spec, 0, gpus=8)


def test_cli_render_shell_matches_library() -> None:
    result = runner.invoke(worker.app, ["render", "small"])
    assert result.exit_code == 0, result.output
    spec = find_pool("small")
    assert result.output.splitlines() == [shell_command(spec, i) for i in range(spec.replicas)]


def test_cli_render_json_and_k8s_and_compose() -> None:
    out = runner.invoke(worker.app, ["render", "large", "--replica", "1", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [r["replica"] for r in rows] == [1]
    assert rows[0]["argv"] == argv(find_pool("large"), 1)
    out = runner.invoke(worker.app, ["render", "small", "-f", "k8s"])
    assert out.exit_code == 0, out.output
    assert list(yaml.safe_load_all(out.output)) == k8s_objects(find_pool("small"))
    out = runner.invoke(worker.app, ["render", "small", "-r", "0", "-f", "compose"])
    assert yaml.safe_load(out.output) == {
        "services": {"vllm-small-0": compose_service(find_pool("small"), 0)}}


def test_cli_errors_are_clear() -> None:
    out = runner.invoke(worker.app, ["render", "nope"])
    assert out.exit_code == 2 and "no pool 'nope'" in out.output
    out = runner.invoke(worker.app, ["render", "small", "--replica", "9"])
    assert out.exit_code == 2 and "replicas 0..2" in out.output


def test_cli_launch_without_gpu_exits_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has no GPU; make that explicit so the test means the same on a GPU host.
    monkeypatch.setattr("workers.vllm.launcher.visible_gpus", lambda: None)
    out = runner.invoke(worker.app, ["launch", "small", "--replica", "1"])
    assert out.exit_code == 2
    assert "needs NVIDIA GPUs" in out.output


def test_cli_list_shows_every_pool() -> None:
    out = runner.invoke(worker.app, ["list"])
    assert out.exit_code == 0
    names = [line.split()[0] for line in out.output.splitlines()]
    assert names == [p.name for p in load_pools()]
    assert "eagle3 k=3 on 2/2" in out.output and "ngram k=4 on 2/3" in out.output
