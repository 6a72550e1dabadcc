"""Alembic environment: runs on the connection that `bot.store.db.upgrade` passes in.

There is no alembic.ini: use `bot.store.migrate(url)` (``python -m bot migrate``) to upgrade.
To write a new revision, autogenerate against a database at head, e.g.::

    from alembic import command
    from bot.store.db import alembic_config, create_store_engine, write_transaction
    with write_transaction(create_store_engine("sqlite:///dev.db")) as conn:
        command.revision(alembic_config(conn), "what changed", autogenerate=True)
"""

from alembic import context

from bot.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through bot.store.migrate(url); offline (--sql) mode is not supported")

# transactional_ddl: SQLite too, since bot.store.db emits BEGIN itself; a failed upgrade leaves nothing behind.
context.configure(
    connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True, transactional_ddl=True
)
with context.begin_transaction():
    context.run_migrations()
