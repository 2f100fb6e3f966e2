#!/usr/bin/env bash
# System packages the test suites need (idempotent; installs only what is missing).
#   wrk            load generator for benchmarks
#   chromium(-driver) headless browser for the dashboard tests (never a downloaded browser)
#   docker-compose client for validating deploy/docker-compose.yml
#   redis-server   private Redis instances for the Redis-outage fault tests
set -euo pipefail
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
# The Redis fault tests run their own throwaway redis-server (the shared one is never stopped).
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -eq 0 ]; then
    echo "[install-system] all present"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "[install-system] ERROR: need root or sudo to install: ${need[*]}" >&2; exit 1; }
    SUDO=sudo
fi
echo "[install-system] installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
