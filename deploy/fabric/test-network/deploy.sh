#!/usr/bin/env bash
# Deploys the anchor and the vouchers chaincodes as services on the
# fabric-samples test network (Docker), one package per organization and
# chaincode, and registers the organizations' voucher roles (Org1 the
# operator, Org2 a bank, Org3 a distributor). NOT run in Tani's CI
# (no Docker there); what runs there is `tani network up` (see
# ../README.md), which follows the same steps without containers.
#
#   FABRIC_SAMPLES=~/fabric-samples deploy/fabric/test-network/deploy.sh
#
# Each organization's peer needs its own package: the package's
# connection.json names the address of that organization's chaincode
# server, and so its package ID differs. Here the peers are containers,
# so the address is the chaincode server container's name on the test
# network's Docker network (fabric_test): that is the one place this
# script relies on Docker's DNS, and only for containers it starts itself.
set -euo pipefail
: "${FABRIC_SAMPLES:?set FABRIC_SAMPLES to a fabric-samples checkout with Fabric 3.1 binaries (install-fabric.sh)}"
repo=$(cd "$(dirname "$0")/../../.." && pwd)
tn="$FABRIC_SAMPLES/test-network"
channel=${CHANNEL:-tani}
policy="OutOf(2,'Org1MSP.peer','Org2MSP.peer','Org3MSP.peer')"

cd "$tn"
./network.sh down
./network.sh up createChannel -c "$channel" -ca
(cd addOrg3 && ./addOrg3.sh up -c "$channel" -ca)
docker build -f "$repo/deploy/fabric/chaincode/Dockerfile" -t tani-anchor-ccaas:latest "$repo"
docker build -f "$repo/deploy/fabric/chaincode/Dockerfile" --build-arg CHAINCODE=vouchers -t tani-vouchers-ccaas:latest "$repo"

. ./scripts/envVar.sh
export FABRIC_CFG_PATH="$FABRIC_SAMPLES/config"

# deploy NAME IMAGE: one package, chaincode server container and approval
# per organization, then the commit; the chaincode-level policy is 2 of 3
# for both (the vouchers contract adds key-level policies itself).
deploy() {
  local cc=$1 image=$2 label=$1_1.0
  for org in 1 2 3; do
    local name="peer0org${org}_${cc}_ccaas"
    "$repo/deploy/fabric/chaincode/package.sh" "$name:9999" "$label" "$cc-org$org.tar.gz"
    setGlobals "$org"
    peer lifecycle chaincode install "$cc-org$org.tar.gz"
    local pkg
    pkg=$(peer lifecycle chaincode calculatepackageid "$cc-org$org.tar.gz")
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker run -d --name "$name" --network fabric_test \
      -e CHAINCODE_SERVER_ADDRESS=0.0.0.0:9999 -e CHAINCODE_ID="$pkg" -e CHAINCODE_TLS_DISABLED=true \
      "$image"
    peer lifecycle chaincode approveformyorg -o localhost:7050 --ordererTLSHostnameOverride orderer.example.com \
      --tls --cafile "$ORDERER_CA" --channelID "$channel" --name "$cc" --version 1.0 \
      --package-id "$pkg" --sequence 1 --signature-policy "$policy"
  done
  setGlobals 1
  peer lifecycle chaincode commit -o localhost:7050 --ordererTLSHostnameOverride orderer.example.com \
    --tls --cafile "$ORDERER_CA" --channelID "$channel" --name "$cc" --version 1.0 --sequence 1 \
    --signature-policy "$policy" \
    --peerAddresses localhost:7051 --tlsRootCertFiles "$PEER0_ORG1_CA" \
    --peerAddresses localhost:9051 --tlsRootCertFiles "$PEER0_ORG2_CA" \
    --peerAddresses localhost:11051 --tlsRootCertFiles "$PEER0_ORG3_CA"
  echo "$cc chaincode on channel $channel, one package per organization, policy $policy"
}
deploy anchor tani-anchor-ccaas:latest
deploy vouchers tani-vouchers-ccaas:latest

# The voucher roles, as Org1's admin; each registration is new state, so a
# majority of the organizations endorses it (the gateway plans that).
org1=$tn/organizations/peerOrganizations/org1.example.com
admin=$org1/users/Admin@org1.example.com/msp
for role in Org1MSP=operator Org2MSP=bank Org3MSP=distributor; do
  (cd "$repo" && go run ./cmd/tani vouchers register -msp "${role%%=*}" -role "${role#*=}" \
    -fabric.endpoint localhost:7051 -fabric.server-name peer0.org1.example.com \
    -fabric.tls-ca-cert "$org1/peers/peer0.org1.example.com/tls/ca.crt" -fabric.msp-id Org1MSP \
    -fabric.cert "$admin/signcerts/cert.pem" -fabric.key-file "$admin/keystore" -fabric.channel "$channel")
done
