"""runs.executor, runs.ingest_seq, runs.stop_requested: runs that train elsewhere

A run can train on another machine and report its events over HTTP (the ingest API). The store
marks such a run (`executor` = "remote") so the launcher watches it by its heartbeat only and
never signals a process of its own pid, keeps the sequence number its next reported event must
carry (`ingest_seq`, updated in the transaction that writes a batch: a retried batch is never
written twice), and holds a cancel as a flag the run reads in its heartbeat's answer
(`stop_requested`). Existing runs are local runs: no executor, 0, false.

Revision ID: 0003_ingest
Revises: 0002_run_attempts
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0003_ingest'
down_revision: str | None = '0002_run_attempts'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('executor', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('ingest_seq', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('stop_requested', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade() -> None:
    # a remote run becomes a run without a trainer the launcher knows; its rows stay
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('stop_requested')
        batch_op.drop_column('ingest_seq')
        batch_op.drop_column('executor')
