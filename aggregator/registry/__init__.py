"""The registered upstreams: servers.yaml models and validation, the locked atomic store with hot reload, importers."""
