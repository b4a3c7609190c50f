"""API routers, one per resource (full-stack-fastapi-template `api/routes/`)."""
