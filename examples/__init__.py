"""Applications that dispatch evq jobs (not installed with evq): ``fastapi_app``, ``flask_app``."""
