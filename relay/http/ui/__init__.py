"""The web UI at /ui: a static page (static/) over a session-authenticated copy of /history."""
