"""The stream gateway: the session API and a reverse proxy to the sessions' noVNC streams."""
