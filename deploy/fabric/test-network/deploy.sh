#!/usr/bin/env bash
# Brings up the fabric-samples test network with three organizations and
# deploys the anchor chaincode as a service with a 2-of-3 endorsement
# policy. Run from anywhere; FABRIC_SAMPLES points at a fabric-samples
# checkout with the Fabric 2.5 binaries installed (install-fabric.sh).
#
#   FABRIC_SAMPLES=~/fabric-samples deploy/fabric/test-network/deploy.sh
#
# Then point Tani at it with deploy/fabric/client/test-network.env.
set -euo pipefail
: "${FABRIC_SAMPLES:?set FABRIC_SAMPLES to a fabric-samples checkout}"
repo=$(cd "$(dirname "$0")/../../.." && pwd)
tn="$FABRIC_SAMPLES/test-network"
channel=${CHANNEL:-tani}
policy="OutOf(2,'Org1MSP.peer','Org2MSP.peer','Org3MSP.peer')"

cd "$tn"
./network.sh down
./network.sh up createChannel -c "$channel" -ca
(cd addOrg3 && ./addOrg3.sh up -c "$channel" -ca)

# The chaincode needs the whole module as build context, which deployCCAAS's
# own docker build (context: the chaincode path) cannot give it; build the
# image here and let deployCCAAS package, install, approve and commit only.
docker build -f "$repo/deploy/fabric/chaincode/Dockerfile" -t anchor_ccaas_image:latest "$repo"
./network.sh deployCCAAS -c "$channel" -ccn anchor -ccp "$repo/deploy/fabric/chaincode" -ccep "$policy" -ccaasdocker false

# Org3 joined after the channel was created: install and approve there too.
. ./scripts/envVar.sh
. ./scripts/ccutils.sh
export CC_NAME=anchor CHANNEL_NAME="$channel" CC_VERSION=1.0 CC_SEQUENCE=1 CC_END_POLICY="--signature-policy $policy" CC_COLL_CONFIG="" INIT_REQUIRED=""
package_id=$(peer lifecycle chaincode calculatepackageid anchor.tar.gz)
export PACKAGE_ID=$package_id
setGlobals 3
peer lifecycle chaincode install anchor.tar.gz
approveForMyOrg 3

# One chaincode server per organization, named as the package's
# connection.json expects ({{.peername}}_anchor_ccaas:9999). The test
# network's CCaaS connections are plaintext.
for org in 1 2 3; do
  docker rm -f "peer0org${org}_anchor_ccaas" >/dev/null 2>&1 || true
  docker run --rm -d --name "peer0org${org}_anchor_ccaas" --network fabric_test \
    -e CHAINCODE_SERVER_ADDRESS=0.0.0.0:9999 -e CHAINCODE_ID="$package_id" -e CHAINCODE_TLS_DISABLED=true \
    anchor_ccaas_image:latest
done

echo "anchor chaincode deployed on channel $channel with policy $policy"
