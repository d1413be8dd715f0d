"""Operator reviews of cases (confirmed / rejected, reason, who, when) and clean-frame evidence.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("review", sa.String(16), nullable=True))
        batch.add_column(sa.Column("review_reason", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("reviewed_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reviewed_at", sa.String(40), nullable=True))
        batch.create_check_constraint("cases_review", "review IS NULL OR review IN ('confirmed', 'rejected')")
    with op.batch_alter_table("evidence") as batch:
        batch.drop_constraint("evidence_kind", type_="check")
        batch.create_check_constraint("evidence_kind", "kind IN ('snapshot', 'clip', 'frame')")


def downgrade() -> None:
    with op.batch_alter_table("evidence") as batch:
        batch.drop_constraint("evidence_kind", type_="check")
        batch.create_check_constraint("evidence_kind", "kind IN ('snapshot', 'clip')")
    with op.batch_alter_table("cases") as batch:
        batch.drop_constraint("cases_review", type_="check")
        for col in ("reviewed_at", "reviewed_by", "review_reason", "review"):
            batch.drop_column(col)
