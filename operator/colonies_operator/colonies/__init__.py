"""The Colonies client: crypto (keys, ids, signatures), typed models and errors, and an
async RPC client over one HTTP connection pool per server."""
