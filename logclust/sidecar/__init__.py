"""The sidecar's domain without gRPC: `StreamLabeler`, `Sidecar`, store, metrics."""
