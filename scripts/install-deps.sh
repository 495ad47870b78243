#!/usr/bin/env bash
# Installs the Debian 12 packages Shutter needs to build, test and run.
# Idempotent and non-interactive; safe to run on every CI run.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build ccache pkg-config clang clang-format lld
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libfmt-dev librocksdb-dev libssl-dev
  libcurl4-openssl-dev prometheus-cpp-dev prometheus
  libgtest-dev libgmock-dev libclang-rt-14-dev
  libcli11-dev libsystemd-dev libtbb-dev systemd
  etcd-server etcd-client
  chromium python3-websocket
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
updated=0

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PKGS[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  updated=1
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# etcd's own API definitions (rpc.proto, kv.proto, auth.proto), from which
# the build generates the controller's etcd client. Debian ships them in
# golang-etcd-server-dev, whose Go dependencies (~130 packages, 500 MB) the
# C++ build does not need: take the .deb alone and unpack the .proto files.
ETCD_PROTO_DIR=/usr/local/share/shutter/etcd-proto
ETCD_GO_DIR=/usr/share/gocode/src/go.etcd.io/etcd
if [[ ! -f $ETCD_GO_DIR/etcdserver/etcdserverpb/rpc.proto &&
      ! -f $ETCD_PROTO_DIR/etcdserver/etcdserverpb/rpc.proto ]]; then
  echo "install-deps: unpacking etcd's .proto files into $ETCD_PROTO_DIR"
  ((updated)) || $SUDO apt-get update -qq
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  chmod 777 "$tmp"
  (cd "$tmp" && apt-get download -qq golang-etcd-server-dev 2>/dev/null)
  mkdir -p "$tmp/x"
  dpkg-deb --fsys-tarfile "$tmp"/golang-etcd-server-dev_*.deb |
    tar -x -C "$tmp/x" --wildcards '*.proto'
  $SUDO mkdir -p "$ETCD_PROTO_DIR"
  $SUDO cp -r "$tmp/x/$ETCD_GO_DIR/." "$ETCD_PROTO_DIR/"
fi
