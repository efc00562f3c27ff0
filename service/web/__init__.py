"""The reading-room web page and its JSON twin (FastAPI, Jinja2, served by uvicorn)."""
