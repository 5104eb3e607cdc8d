"""Generated gRPC and protobuf code for `logclust.v1` (run scripts/gen_proto.sh to refresh)."""
