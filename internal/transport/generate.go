package transport

//go:generate sh -c "cd ../.. && protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=module=github.com/tinymod/tinymod --go-grpc_out=. --go-grpc_opt=module=github.com/tinymod/tinymod api/proto/transport.proto"
