"""The Arrow contract between callers and the sidecar: column names, checks, IPC bytes."""
