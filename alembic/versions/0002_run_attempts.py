"""runs.attempt and runs.resumed_at_seq: a structured marker of resumes

The live hub used to detect a resume (which deletes the crashed attempt's rows after the
checkpoint) by the text of a log line. Now `truncate_after_step` bumps `attempt` and records the
seq of its own log line in `resumed_at_seq`. Existing runs get attempt 0 and no marker (a resume
that happened before this migration is simply not re-announced).

Revision ID: 0002_run_attempts
Revises: 0001_initial
Create Date: 2026-11-25 17:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0002_run_attempts'
down_revision: str | None = '0001_initial'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('resumed_at_seq', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # the columns only mark resumes; dropping them loses nothing the runs' data needs
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('resumed_at_seq')
        batch_op.drop_column('attempt')
