#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: a real Fabric
# network is brought up once (scripts/fabric-local.sh) for the tests that
# run against real peers, and torn down at the end whatever happens.
#
# Without Fabric binaries a developer gets a note and the suite runs
# without the real network (those tests skip); under CI (CI=true) that,
# like any failed bring-up, fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
say() { printf 'test: %s\n' "$*" >&2; }

net_dir=$(mktemp -d "${TMPDIR:-/tmp}/tani-fabric.XXXXXX")
cleanup() {
  scripts/fabric-local.sh down "$net_dir" >/dev/null 2>&1 || true
  rm -rf "$net_dir" "$net_dir.log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

real=""
began=$(date +%s)
set +e
scripts/fabric-local.sh up "$net_dir" 2>"$net_dir.log"
rc=$?
set -e
up_secs=$(( $(date +%s) - began ))
case $rc in
  0)
    eval "$(scripts/fabric-local.sh env "$net_dir")"
    real=1
    mem=$(bin/tani network status -dir "$net_dir" | tail -n 1)
    say "real Fabric network up in ${up_secs}s ($mem); logs under $net_dir/run"
    ;;
  3)
    if [ "${CI:-}" = "true" ]; then
      cat "$net_dir.log" >&2
      say "FAIL: no Fabric binaries under CI; the real-network tests cannot run"
      exit 1
    fi
    say "SKIP: no Fabric binaries here (see scripts/fabric-local.sh); tests against real Fabric peers are skipped"
    ;;
  *)
    cat "$net_dir.log" >&2
    say "FAIL: the real Fabric network did not come up (exit $rc); process logs: $net_dir/run/*/log"
    for f in "$net_dir"/run/*/log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
    exit 1
    ;;
esac
status=0
$GO test -timeout 30m ./... || status=$?
if [ -n "$real" ]; then
  # The anchoring suite behind its build tag, against the shared network
  # as BankMSP's admin (through BankMSP's own peer).
  set -a; . "$net_dir/tani-BankMSP.env"; set +a
  FABRIC_GATEWAY_ENDPOINT=$TANI_FABRIC_ENDPOINT FABRIC_SERVER_NAME=$TANI_FABRIC_SERVER_NAME \
  FABRIC_TLS_CA_CERT=$TANI_FABRIC_TLS_CA_CERT FABRIC_MSP_ID=$TANI_FABRIC_MSP_ID \
  FABRIC_CERT_PATH=$TANI_FABRIC_CERT FABRIC_KEY_PATH=$TANI_FABRIC_KEY_FILE \
  FABRIC_CHANNEL=$TANI_FABRIC_CHANNEL FABRIC_CHAINCODE=$TANI_FABRIC_CHAINCODE \
    $GO test -tags fabric_integration -count=1 -run Integration ./ledger/anchor || status=$?
  # The vouchers suite behind the same tag, given only TaniMSP's gateway and
  # the parties' client identities (as for any network: deploy/fabric).
  set -a; . "$net_dir/tani-TaniMSP.env"; set +a
  FABRIC_GATEWAY_ENDPOINT=$TANI_FABRIC_ENDPOINT FABRIC_SERVER_NAME=$TANI_FABRIC_SERVER_NAME \
  FABRIC_TLS_CA_CERT=$TANI_FABRIC_TLS_CA_CERT FABRIC_CHANNEL=$TANI_FABRIC_CHANNEL \
  FABRIC_VOUCHERS_CHAINCODE=$TANI_VOUCHERS_CHAINCODE FABRIC_VOUCHERS_IDENTITIES=$TANI_VOUCHERS_IDENTITIES \
    $GO test -tags fabric_integration -count=1 -run Integration ./ledger/vouchers || status=$?
  say "real Fabric network: up in ${up_secs}s, $(bin/tani network status -dir "$net_dir" | tail -n 1) at the end"
fi
exit $status
