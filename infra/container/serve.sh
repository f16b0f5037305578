#!/bin/sh
# Entry point of the server image. `exec` makes modelbay (uvicorn) PID 1, so it receives
# SIGTERM from `podman stop`, ECS and Kubernetes itself and shuts down gracefully.
# HOST and PORT choose the listening socket (the HEALTHCHECK reads PORT too); more
# `modelbay serve` options may follow as arguments, e.g. --no-auth.
exec /opt/venv/bin/python -m modelbay serve --host "${HOST:-0.0.0.0}" --port "${PORT:-8080}" "$@"
