"""Worker tests use the session-wide `vllm_server` fixture from tests/conftest.py."""
