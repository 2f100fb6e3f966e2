"""ASGI entry point for process managers: `uvicorn --factory gateway.asgi:create`.

Reads the config named by $FRUGATE_CONFIG (default configs/frugate.yaml).
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.app import create_app
from gateway.config import config_path, load_settings


def create() -> FastAPI:
    return create_app(load_settings(config_path()))
