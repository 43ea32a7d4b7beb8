#!/usr/bin/env bash
# A real Hyperledger Fabric network on this machine, without Docker, from
# `tani network init` output: one etcdraft orderer (ORDERERS=3 for three),
# and per organization (TaniMSP, BankMSP, DistributorMSP) a Fabric CA, a
# peer and the anchor chaincode as a service; channel created and joined,
# chaincode approved by each organization and committed with a 2-of-3
# policy. Idempotent; `down` stops only what `up` started (pid files).
#
#   scripts/fabric-local.sh up   [DIR]   # default DIR: var/fabric-local
#   scripts/fabric-local.sh down [DIR]
#   scripts/fabric-local.sh env  [DIR]   # the variables tests read
#   scripts/fabric-local.sh bin          # where the Fabric binaries are
#
# Fabric binaries, in this order: $FABRIC_BIN; `peer` on PATH; a source
# build by ../shared/fabric/build.sh when that folder exists (a Tani
# development machine); otherwise this prints how to get the release
# archive and exits 3.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
dir=${2:-$repo/var/fabric-local}
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac

say()  { printf 'fabric-local: %s\n' "$*" >&2; }
fail() { printf 'fabric-local: %s\n' "$*" >&2; exit "${2:-1}"; }

# fabric_bin prints the directory of peer, orderer and fabric-ca-server.
fabric_bin() {
  if [ -n "${FABRIC_BIN:-}" ]; then
    [ -x "$FABRIC_BIN/peer" ] || fail "FABRIC_BIN=$FABRIC_BIN has no peer program"
    echo "$FABRIC_BIN"; return
  fi
  if command -v peer >/dev/null; then
    dirname "$(command -v peer)"; return
  fi
  local shared="$repo/../shared/fabric/build.sh"
  if [ -x "$shared" ] || [ -f "$shared" ]; then
    say "Fabric from ../shared/fabric (built once into \${FABRIC_BUILD_CACHE:-~/.cache/fabric-builds}; minutes the first time)"
    bash "$shared"; return
  fi
  cat >&2 <<'EOF'
fabric-local: no Fabric binaries. Either
  - download the Fabric 3.1 and Fabric CA 1.5 release archives for your platform from
    https://github.com/hyperledger/fabric/releases (hyperledger-fabric-linux-amd64-3.1.x.tar.gz)
    and https://github.com/hyperledger/fabric-ca/releases (hyperledger-fabric-ca-linux-amd64-1.5.x.tar.gz),
    unpack both into one directory and set FABRIC_BIN to its bin/ (config/ and builders/ccaas/ beside it), or
  - put peer, orderer and fabric-ca-server on PATH.
EOF
  exit 3
}

build_tani() {
  mkdir -p "$repo/bin"
  (cd "$repo" && go build -o bin/tani ./cmd/tani && go build -o bin/tani-chaincode ./cmd/tani-chaincode)
}

case "$cmd" in
  bin)
    fabric_bin ;;
  up)
    bin=$(fabric_bin)
    build_tani
    if [ ! -f "$dir/consortium.json" ]; then
      # Free ports, so runs side by side (and Tani's 8080 and the devnet's
      # 7051) never collide; a short batch timeout for fast commits.
      "$repo/bin/tani" network init -dir "$dir" -free-ports -orderers "${ORDERERS:-1}" -batch-timeout "${BATCH_TIMEOUT:-250ms}" >&2
    fi
    "$repo/bin/tani" network up -dir "$dir" -fabric-bin "$bin" -chaincode-bin "$repo/bin/tani-chaincode" >&2
    "$repo/bin/tani" network status -dir "$dir" >&2
    say "up; point Tani at it with: set -a; . $dir/tani-TaniMSP.env; set +a"
    ;;
  down)
    [ -f "$dir/consortium.json" ] || { say "no network in $dir"; exit 0; }
    [ -x "$repo/bin/tani" ] || build_tani
    "$repo/bin/tani" network down -dir "$dir" >&2
    ;;
  env)
    [ -f "$dir/consortium.json" ] || fail "no network in $dir (run: $0 up $dir)"
    bin=$(fabric_bin)
    echo "export TANI_FABRIC_NETWORK=$dir"
    echo "export FABRIC_BIN=$bin"
    echo "export TANI_CHAINCODE_BIN=$repo/bin/tani-chaincode"
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2 ;;
esac
