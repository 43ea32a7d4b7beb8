#!/usr/bin/env bash
# Builds the CCaaS install package of one of Tani's chaincodes: a tar.gz
# holding metadata.json (type ccaas) and code.tar.gz with connection.json,
# which tells each peer where the chaincode server runs.
#
#   package.sh ADDRESS [LABEL] [OUT] [ROOT_CERT_PEM]
#
# LABEL is anchor_1.0 (default) or vouchers_1.0 for the vouchers chaincode,
# whose server (tani-chaincode -chaincode vouchers) listens at its own
# ADDRESS.
#
# ADDRESS is host:port as the peers reach it (may use {{.peername}}, which
# the CCaaS builder expands). With ROOT_CERT_PEM the peer requires TLS and
# verifies the chaincode server against that CA.
set -euo pipefail
address=${1:?usage: package.sh ADDRESS [LABEL] [OUT] [ROOT_CERT_PEM]}
label=${2:-anchor_1.0}
out=${3:-anchor.tar.gz}
root_cert=${4:-}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -n "$root_cert" ]]; then
  pem=$(awk 'NF {sub(/\r/, ""); printf "%s\\n", $0}' "$root_cert")
  printf '{"address":"%s","dial_timeout":"10s","tls_required":true,"client_auth_required":false,"root_cert":"%s"}\n' "$address" "$pem" >"$work/connection.json"
else
  printf '{"address":"%s","dial_timeout":"10s","tls_required":false}\n' "$address" >"$work/connection.json"
fi
printf '{"type":"ccaas","label":"%s"}\n' "$label" >"$work/metadata.json"
tar -C "$work" -czf "$work/code.tar.gz" connection.json
tar -C "$work" -czf "$out" metadata.json code.tar.gz
echo "wrote $out (label $label, address $address)"
