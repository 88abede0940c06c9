"""The web app: webhooks, SDR pages and the dev mail viewer (FastAPI)."""

from nurture.web.app import create_app

__all__ = ["create_app"]
