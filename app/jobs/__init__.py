"""Background jobs: the store (SQLite / PostgreSQL), its migrations, the runner, webhooks."""
