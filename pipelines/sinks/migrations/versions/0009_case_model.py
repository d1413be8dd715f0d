"""The model that raised a case: its name and version, and the SHA-256 of its weights (empty for cases stored
before models were recorded).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("model", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("model_sha256", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("model_sha256")
        batch.drop_column("model")
