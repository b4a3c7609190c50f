"""runs.credential_hash: a credential of the run's own for its trainer

Every run a launcher starts reports over the ingest API, whatever its executor. Its trainer (a
local worker process or a Dask task) gets a random secret minted for this attempt of the run,
instead of the dashboard's token; the run stores only the secret's SHA-256, and the ingest
routes of that run alone accept it. A resume mints a new one, so an earlier attempt's trainer can
no longer write. Existing runs have none (they report with the dashboard's token, as before).

Revision ID: 0006_run_credential
Revises: 0005_run_launcher
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0006_run_credential'
down_revision: str | None = '0005_run_launcher'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credential_hash', sa.String(length=64), nullable=True))


def downgrade() -> None:
    # trainers then report with the dashboard's token only; nothing of the runs' data is lost
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('credential_hash')
