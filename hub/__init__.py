"""The platform: wire protocol, party registry and credentials, settings, app factory, CLI and admin surfaces."""
