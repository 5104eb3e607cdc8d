"""OpenTelemetry logs in and out: the OTLP/gRPC (`receiver`) and OTLP/HTTP (`http`)
receivers, the mapping of log records to the Arrow contract (`mapping`, `columns`), the
forwarder to the next hop (`forward`), their settings (`config`) and the listeners
started together (`endpoints`). TLS and error statuses come from `logclust.rpc`, as for
the `LogClust` server; nothing here imports `logclust.server`."""
