#!/usr/bin/env bash
# LocalStack for modelbay: install | start | stop | status | deploy
#
#   install the Python core into .venv-localstack (unless Docker is there)
#   start   the Docker image when a Docker engine answers, else LocalStack's Python
#           core in .venv-localstack (Python 3.13; S3, CloudFormation, Secrets
#           Manager, API Gateway REST, CloudWatch - but no Lambda without Docker)
#   deploy  with Docker: the whole template through sam deploy;
#           without: the storage stack (bucket, policy, bootstrap secret) through
#           CloudFormation, then prints how to serve modelbay on it locally
#   stop    stops only the LocalStack this script started (pid file / container name)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.localstack
# the tests start their own LocalStack on a free port (tests/servers.py); this one is for people
PORT=${LOCALSTACK_PORT:-4566}
ENDPOINT=${LOCALSTACK_ENDPOINT:-http://127.0.0.1:$PORT}
CONTAINER=modelbay-localstack
LS_VENV=$ROOT/.venv-localstack
# pyenv's root from PYENV_ROOT (or `pyenv root`), not from HOME: an empty HOME must still find it
PYENV_DIR=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
LS_PYTHON=${LS_PYTHON:-$(ls -d "$PYENV_DIR"/versions/3.13*/bin/python 2>/dev/null | head -1 || true)}
LS_PYTHON=${LS_PYTHON:-$(command -v python3.13 || true)}
STACK=${STACK:-modelbay}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

have_docker() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }
healthy() { curl -sf "$ENDPOINT/_localstack/health" >/dev/null 2>&1; }

install_core() {
  [ -x "$LS_VENV/bin/python" ] && [ -f "$LS_VENV/.installed-stamp" ] && return
  [ -n "$LS_PYTHON" ] || { echo "LocalStack's core needs Python >= 3.13 (pyenv install 3.13)"; exit 1; }
  echo "localstack: installing LocalStack's core into $LS_VENV (Python 3.13, a few minutes, once)" >&2
  "$LS_PYTHON" -m venv "$LS_VENV"
  "$LS_VENV/bin/python" -m pip install -q --upgrade pip
  # the pins that make localstack-core's runtime install and start outside Docker
  "$LS_VENV/bin/python" -m pip install -q "localstack-core[runtime]==2026.3.0" "cbor2<6" \
    "pyopenssl==26.0.0" "cryptography<47" service_identity
  touch "$LS_VENV/.installed-stamp"
}

wait_healthy() {
  for _ in $(seq 1 120); do healthy && return 0; sleep 0.5; done
  echo "LocalStack did not answer on $ENDPOINT; see $STATE/localstack.log"; exit 1
}

start() {
  mkdir -p "$STATE"
  exec 9> "$STATE/lock"
  flock 9  # two callers at once start one LocalStack
  if healthy; then echo "LocalStack already answers on $ENDPOINT"; return; fi
  if have_docker; then
    docker run -d --rm --name "$CONTAINER" -p "127.0.0.1:$PORT:4566" \
      -v /var/run/docker.sock:/var/run/docker.sock localstack/localstack >/dev/null
    echo docker > "$STATE/mode"
  else
    install_core
    echo "localstack: starting LocalStack's core on $ENDPOINT (log $STATE/localstack.log)" >&2
    # OVERRIDE_IN_DOCKER=0: the core runs on the host; no DNS server, hypercorn gateway;
    # its files under $STATE (FILESYSTEM_ROOT), not in the venv's site-packages.
    # setsid + exec chain (setsid, nohup, python) keep one pid: the one stop kills.
    cd "$STATE"
    OVERRIDE_IN_DOCKER=0 GATEWAY_SERVER=hypercorn GATEWAY_LISTEN="127.0.0.1:$PORT" DNS_ADDRESS=0 \
      SKIP_SSL_CERT_DOWNLOAD=1 FILESYSTEM_ROOT="$STATE/fs" LOCALSTACK_VOLUME_DIR="$STATE/volume" \
      setsid nohup "$LS_VENV/bin/python" -m localstack.runtime.main \
      < /dev/null > "$STATE/localstack.log" 2>&1 9>&- &
    echo $! > "$STATE/pid"
    cd "$ROOT"
    echo core > "$STATE/mode"
  fi
  wait_healthy
  echo "LocalStack ($(cat "$STATE/mode")) answers on $ENDPOINT"
}

stop() {
  mode=$(cat "$STATE/mode" 2>/dev/null || true)
  if [ "$mode" = docker ]; then
    docker stop "$CONTAINER" >/dev/null 2>&1 || true
  elif [ -f "$STATE/pid" ]; then
    pid=$(cat "$STATE/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true  # hung in shutdown
  fi
  rm -f "$STATE/pid" "$STATE/mode"
  echo "LocalStack stopped"
}

deploy() {
  start
  if [ "$(cat "$STATE/mode")" = docker ]; then
    echo "localstack: sam validate and sam build, then sam deploy of the whole template" >&2
    make -s sam-check
    AWS_ENDPOINT_URL=$ENDPOINT PATH="$ROOT/.venv-sam/bin:$PATH" SAM_CLI_TELEMETRY=0 \
      "$ROOT/.venv-sam/bin/sam" deploy --config-file infra/samconfig.toml --stack-name "$STACK" \
      --parameter-overrides "Architecture=${ARCH:-arm64}"
  else
    echo "No Docker engine: LocalStack cannot run Lambda functions. Deploying the storage stack only."
    AWS_ENDPOINT_URL=$ENDPOINT "$ROOT/.venv-sam/bin/python" infra/deploy_local.py --stack "$STACK"
  fi
}

case "${1:-}" in
  install) have_docker || install_core ;;
  start) start ;;
  stop) stop ;;
  status) healthy && echo "up ($(cat "$STATE/mode" 2>/dev/null || echo 'not ours'))" || echo down ;;
  deploy) deploy ;;
  *) echo "usage: $0 install|start|stop|status|deploy"; exit 2 ;;
esac
