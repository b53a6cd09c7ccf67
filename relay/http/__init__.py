"""The HTTP interface: intake, callbacks, history, the seed systems, the web UI."""
