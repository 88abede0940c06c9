"""Alembic revisions, oldest first; each works on SQLite (batch mode) and PostgreSQL."""
