"""runs.launcher: the dashboard that starts and supervises a run

Several dashboards may serve one database (PostgreSQL). Each has a launcher; a queued run is
started by exactly one of them: the one it was launched from, or the first that claims it with a
conditional UPDATE. The others watch it by its heartbeat only, so a launcher never spawns a second
worker for another's run, nor judges it by a process table it cannot see. Existing runs have no
launcher: the first launcher to look claims them, as before.

Revision ID: 0005_run_launcher
Revises: 0004_samples
Create Date: 2026-11-30 15:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0005_run_launcher'
down_revision: str | None = '0004_samples'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('launcher', sa.String(length=255), nullable=True))


def downgrade() -> None:
    # runs go back to "whichever launcher claims them first"; nothing of their data is lost
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('launcher')
