"""A case's snapshot re-taken at the main stream's full resolution (``fullres``) as a kind of evidence.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("evidence") as batch:
        batch.drop_constraint("evidence_kind", type_="check")
        batch.create_check_constraint("evidence_kind", "kind IN ('snapshot', 'clip', 'frame', 'plate', 'fullres')")


def downgrade() -> None:
    op.execute("DELETE FROM evidence WHERE kind = 'fullres'")
    with op.batch_alter_table("evidence") as batch:
        batch.drop_constraint("evidence_kind", type_="check")
        batch.create_check_constraint("evidence_kind", "kind IN ('snapshot', 'clip', 'frame', 'plate')")
