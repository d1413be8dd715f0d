"""One outbox for every notifier: what a row carries (a case to dispatch, a warning to speak).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="case"))
    op.create_index("outbox_target_due", "outbox", ["target", "state", "next_attempt"])


def downgrade() -> None:
    op.drop_index("outbox_target_due", "outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("kind")
