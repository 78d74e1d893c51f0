"""The FastAPI search service: photo upload search, more-like-this, a web page and metrics."""
