"""Alembic migrations of the app database; run them with :func:`nurture.adapters.schema.migrate`."""
