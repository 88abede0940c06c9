"""Alembic migrations of the app database; run them with :func:`nurture.migrate.migrate`."""
