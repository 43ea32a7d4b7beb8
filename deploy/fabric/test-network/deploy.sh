#!/usr/bin/env bash
# Deploys the anchor chaincode as a service on the fabric-samples test
# network (Docker), one package per organization. NOT run in Tani's CI
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
label=anchor_1.0

cd "$tn"
./network.sh down
./network.sh up createChannel -c "$channel" -ca
(cd addOrg3 && ./addOrg3.sh up -c "$channel" -ca)
docker build -f "$repo/deploy/fabric/chaincode/Dockerfile" -t tani-anchor-ccaas:latest "$repo"

. ./scripts/envVar.sh
export FABRIC_CFG_PATH="$FABRIC_SAMPLES/config"
for org in 1 2 3; do
  name="peer0org${org}_anchor_ccaas"
  "$repo/deploy/fabric/chaincode/package.sh" "$name:9999" "$label" "anchor-org$org.tar.gz"
  setGlobals "$org"
  peer lifecycle chaincode install "anchor-org$org.tar.gz"
  pkg=$(peer lifecycle chaincode calculatepackageid "anchor-org$org.tar.gz")
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" --network fabric_test \
    -e CHAINCODE_SERVER_ADDRESS=0.0.0.0:9999 -e CHAINCODE_ID="$pkg" -e CHAINCODE_TLS_DISABLED=true \
    tani-anchor-ccaas:latest
  peer lifecycle chaincode approveformyorg -o localhost:7050 --ordererTLSHostnameOverride orderer.example.com \
    --tls --cafile "$ORDERER_CA" --channelID "$channel" --name anchor --version 1.0 \
    --package-id "$pkg" --sequence 1 --signature-policy "$policy"
done
setGlobals 1
peer lifecycle chaincode commit -o localhost:7050 --ordererTLSHostnameOverride orderer.example.com \
  --tls --cafile "$ORDERER_CA" --channelID "$channel" --name anchor --version 1.0 --sequence 1 \
  --signature-policy "$policy" \
  --peerAddresses localhost:7051 --tlsRootCertFiles "$PEER0_ORG1_CA" \
  --peerAddresses localhost:9051 --tlsRootCertFiles "$PEER0_ORG2_CA" \
  --peerAddresses localhost:11051 --tlsRootCertFiles "$PEER0_ORG3_CA"
echo "anchor chaincode on channel $channel, one package per organization, policy $policy"
