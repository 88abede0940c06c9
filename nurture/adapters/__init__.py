"""The outside world, each behind one module: the app database and its schema, the
Temporal client, SMTP, secrets and signatures, and the files marketers edit."""
