"""Python client of the sidecar: Arrow tables in, Arrow tables out (`Client`).

Depends on the wire contract and the generated gRPC code only, never on server code.
"""

from logclust.client.client import DEFAULT_ADDR, Client, ClientTls

__all__ = ["DEFAULT_ADDR", "Client", "ClientTls"]
