"""The vehicle of a truck case: its plate as read and voted, and what the muck-transport register says (JSON);
its plate crop as a kind of evidence.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("vehicle", sa.Text, nullable=False, server_default="{}"))
    with op.batch_alter_table("evidence") as batch:
        batch.drop_constraint("evidence_kind", type_="check")
        batch.create_check_constraint("evidence_kind", "kind IN ('snapshot', 'clip', 'frame', 'plate')")


def downgrade() -> None:
    op.execute("DELETE FROM evidence WHERE kind = 'plate'")
    with op.batch_alter_table("evidence") as batch:
        batch.drop_constraint("evidence_kind", type_="check")
        batch.create_check_constraint("evidence_kind", "kind IN ('snapshot', 'clip', 'frame')")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("vehicle")
