"""Alembic environment: migrations run on the connection app/jobs/migrate.py hands over (at start-up, under
an advisory lock on PostgreSQL), never from an ini file."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
