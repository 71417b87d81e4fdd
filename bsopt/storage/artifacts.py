"""An Optuna artifact store in a table of the study's own database.

With a PostgreSQL storage every worker on every machine already reaches the database, so
keeping checkpoints there lets a trial retried on another machine resume where the dead
one stopped, with nothing else to set up. :class:`DatabaseArtifactStore` implements
Optuna's three-method ``ArtifactStore`` protocol (``open_reader``, ``write``, ``remove``)
on a table ``bsopt_artifacts`` next to Optuna's own tables, through SQLAlchemy; calls
are repeated while the connection is lost, like the storage's (``bsopt.storage``).
"""

from __future__ import annotations

import io
from typing import BinaryIO

import sqlalchemy
from optuna.artifacts.exceptions import ArtifactNotFound
from sqlalchemy.dialects import postgresql, sqlite

from bsopt.storage.factory import configure_sqlite_engine, engine_kwargs
from bsopt.storage.retries import call_with_retry
from bsopt.storage.urls import sqlalchemy_url

TABLE_NAME = "bsopt_artifacts"

_metadata = sqlalchemy.MetaData()
artifacts_table = sqlalchemy.Table(
    TABLE_NAME, _metadata,
    sqlalchemy.Column("artifact_id", sqlalchemy.String(512), primary_key=True),
    sqlalchemy.Column("data", sqlalchemy.LargeBinary, nullable=False),
    sqlalchemy.Column("updated_at", sqlalchemy.DateTime, nullable=False,
                      server_default=sqlalchemy.func.now()),
)


class DatabaseArtifactStore:
    """Artifacts as rows of ``bsopt_artifacts`` in a PostgreSQL (or SQLite) database.

    Args:
        url: The database URL, as for the storage (``postgresql://...`` uses psycopg 3).

    Example:
        >>> store = DatabaseArtifactStore("sqlite:///:memory:")
        >>> store.write("a", io.BytesIO(b"hello"))
        >>> store.open_reader("a").read()
        b'hello'
    """

    def __init__(self, url: str) -> None:
        self.url = url = sqlalchemy_url(url)
        self.engine = sqlalchemy.create_engine(url, **engine_kwargs(url))
        if self.engine.dialect.name == "sqlite":
            configure_sqlite_engine(self.engine)
        call_with_retry(self._create_table, what="create artifact table", url=url)

    def _create_table(self) -> None:
        try:
            _metadata.create_all(self.engine)
        except sqlalchemy.exc.DBAPIError:
            # Workers starting together race to create it; one of them wins.
            if not sqlalchemy.inspect(self.engine).has_table(TABLE_NAME):
                raise

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """The artifact's bytes as a binary file object.

        Raises:
            ArtifactNotFound: no artifact ``artifact_id``.
        """
        query = sqlalchemy.select(artifacts_table.c.data).where(
            artifacts_table.c.artifact_id == artifact_id)

        def read() -> bytes | None:
            with self.engine.connect() as connection:
                return connection.execute(query).scalar_one_or_none()

        data = call_with_retry(read, what="read artifact", url=self.url)
        if data is None:
            raise ArtifactNotFound(f"artifact {artifact_id!r} not found")
        return io.BytesIO(data)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Store ``content_body``'s bytes as ``artifact_id``, replacing any earlier ones."""
        data = content_body.read()
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(artifacts_table).values(artifact_id=artifact_id, data=data)
        # An upsert: writing again (a retry after a lost connection) is harmless.
        upsert = insert.on_conflict_do_update(
            index_elements=[artifacts_table.c.artifact_id],
            set_={"data": insert.excluded.data, "updated_at": sqlalchemy.func.now()})

        def store() -> None:
            with self.engine.begin() as connection:
                connection.execute(upsert)

        call_with_retry(store, what="write artifact", url=self.url)

    def remove(self, artifact_id: str) -> None:
        """Delete ``artifact_id``.

        Raises:
            ArtifactNotFound: no artifact ``artifact_id``.
        """
        delete = artifacts_table.delete().where(artifacts_table.c.artifact_id == artifact_id)

        def remove() -> int:
            with self.engine.begin() as connection:
                return connection.execute(delete).rowcount

        if not call_with_retry(remove, what="remove artifact", url=self.url):
            raise ArtifactNotFound(f"artifact {artifact_id!r} not found")

    def artifact_ids(self) -> list[str]:
        """The ids of every stored artifact (for inspection and tests)."""
        query = sqlalchemy.select(artifacts_table.c.artifact_id).order_by(
            artifacts_table.c.artifact_id)

        def read() -> list[str]:
            with self.engine.connect() as connection:
                return list(connection.execute(query).scalars())

        return call_with_retry(read, what="list artifacts", url=self.url)
