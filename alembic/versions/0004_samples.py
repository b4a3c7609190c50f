"""sample_snapshots and run_samples: the samples a run looks at

`sample_snapshots` holds one row per sample snapshot (the k lowest-margin samples of its step and
the selection counts since the previous snapshot, as columnar JSON); `run_samples` one row per
training sample a snapshot named, updated in place (selection totals, latest margin and
prediction, the label-noise flag, the current suspect score). Existing runs have no snapshots.

Revision ID: 0004_samples
Revises: 0002_run_attempts
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0004_samples'
down_revision: str | None = '0002_run_attempts'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'sample_snapshots',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('epoch', sa.Float(), nullable=False),
        sa.Column('scored', sa.String(length=16), nullable=False),
        sa.Column('lowest', sa.JSON(), nullable=False),
        sa.Column('selected', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_sample_snapshots_run_id_runs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sample_snapshots')),
    )
    with op.batch_alter_table('sample_snapshots', schema=None) as batch_op:
        batch_op.create_index('ix_sample_snapshots_run_id_seq', ['run_id', 'seq'], unique=True)
        batch_op.create_index('ix_sample_snapshots_run_id_step', ['run_id', 'step'], unique=False)

    op.create_table(
        'run_samples',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('sample', sa.Integer(), nullable=False),
        sa.Column('label', sa.Integer(), nullable=True),
        sa.Column('flipped', sa.Boolean(), nullable=False),
        sa.Column('selected', sa.Integer(), nullable=False),
        sa.Column('misclassified', sa.Integer(), nullable=False),
        sa.Column('last_mms', sa.Float(), nullable=True),
        sa.Column('last_prediction', sa.Integer(), nullable=True),
        sa.Column('last_step', sa.Integer(), nullable=True),
        sa.Column('observed', sa.Integer(), nullable=False),
        sa.Column('mean_mms', sa.Float(), nullable=True),
        sa.Column('suspect_score', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_samples_run_id_runs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id', 'sample', name=op.f('pk_run_samples')),
    )
    with op.batch_alter_table('run_samples', schema=None) as batch_op:
        batch_op.create_index('ix_run_samples_run_id_selected', ['run_id', 'selected'], unique=False)
        batch_op.create_index('ix_run_samples_run_id_suspect_score', ['run_id', 'suspect_score'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('run_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_run_samples_run_id_suspect_score')
        batch_op.drop_index('ix_run_samples_run_id_selected')
    op.drop_table('run_samples')
    with op.batch_alter_table('sample_snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_sample_snapshots_run_id_step')
        batch_op.drop_index('ix_sample_snapshots_run_id_seq')
    op.drop_table('sample_snapshots')
