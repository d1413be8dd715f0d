"""Shop frontage responsibility ("门前三包"): the shop registry and the reminders texted to shops.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "shops",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("address", sa.String(256), nullable=False, server_default=""),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("camera", sa.String(64), nullable=False, index=True),
        sa.Column("frontage", sa.Text, nullable=False),  # JSON [[x, y], ...], normalised
        sa.Column("violations", sa.Text, nullable=False),  # JSON list
        sa.Column("licence", sa.String(64), nullable=False, server_default=""),
        sa.Column("contact", sa.String(64), nullable=False, server_default=""),
        sa.Column("opt_out", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "reminders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(32), sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("shop_id", sa.String(64), nullable=False, index=True),  # no foreign key: a shop may be removed
        sa.Column("camera", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("violation", sa.String(32), nullable=False),
        sa.Column("sent", sa.Integer, nullable=False),  # 0: attributed but not texted (``reason``)
        sa.Column("reason", sa.String(32), nullable=True),  # quiet_hours, opted_out, daily_limit
        sa.Column("channels", sa.Text, nullable=False, server_default="[]"),
        sa.Column("text", sa.Text, nullable=False, server_default=""),
        sa.Column("offence", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("deadline_at", sa.String(40), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("time_to_clear_s", sa.Float, nullable=True),
        sa.Column("delivery", sa.String(16), nullable=True),  # the gateway's last delivery report
        sa.Column("delivery_at", sa.String(40), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("reminders")
    op.drop_table("shops")
