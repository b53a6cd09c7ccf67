"""relay: a Docker Hub-style webhook chain relay."""

__version__ = "0.1.0"
