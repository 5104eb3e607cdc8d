#!/usr/bin/env bash
# Regenerates logclust/proto/ from proto/logclust/v1/*.proto (the one way to do it).
# The generated files are committed; rerun this after editing the .proto.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="logclust/proto"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PY" -m grpc_tools.protoc -I proto \
  --python_out="$TMP" --pyi_out="$TMP" --grpc_python_out="$TMP" \
  proto/logclust/v1/logclust.proto
"$PY" -m grpc_tools.protoc -I proto --python_out="$TMP" --pyi_out="$TMP" \
  proto/logclust/v1/otlp_columns.proto

cp "$TMP/logclust/v1/logclust_pb2.py" "$TMP/logclust/v1/logclust_pb2.pyi" \
  "$TMP/logclust/v1/logclust_pb2_grpc.py" "$TMP/logclust/v1/otlp_columns_pb2.py" \
  "$TMP/logclust/v1/otlp_columns_pb2.pyi" "$OUT/"
# protoc writes imports relative to the -I root (`from logclust.v1 import ...`); the code
# lives in the logclust.proto package instead.
sed -i 's/^from logclust\.v1 import logclust_pb2/from logclust.proto import logclust_pb2/' \
  "$OUT/logclust_pb2_grpc.py"
echo "generated: $(ls "$OUT"/logclust_pb2*)"
