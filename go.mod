module github.com/tani-platform/tani

go 1.26

require (
	github.com/Knetic/govaluate v3.0.0+incompatible // indirect
	github.com/hyperledger/fabric-chaincode-go/v2 v2.3.0 // indirect
	github.com/hyperledger/fabric-config v0.3.0 // indirect
	github.com/hyperledger/fabric-contract-api-go/v2 v2.2.0 // indirect
	github.com/hyperledger/fabric-gateway v1.12.0 // indirect
	github.com/hyperledger/fabric-lib-go v1.1.3 // indirect
	github.com/hyperledger/fabric-protos-go-apiv2 v0.3.7 // indirect
	golang.org/x/net v0.53.0 // indirect
	golang.org/x/sys v0.43.0 // indirect
	golang.org/x/text v0.36.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260414002931-afd174a4e478 // indirect
	google.golang.org/grpc v1.82.1 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)
