"""What every listener shares, the `LogClust` gRPC server and the OTLP receivers alike:
TLS credentials (`tls`) and the mapping of domain errors to statuses (`errors`)."""
