"""routing: roaming agreements, command links, message log, platform connection status

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 06:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("platforms") as batch:
        batch.add_column(sa.Column("connection_status", sa.String(length=16), nullable=False, server_default="PLANNED"))
        batch.add_column(sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE platforms SET connection_status = 'CONNECTED' WHERE status = 'REGISTERED'")
    op.execute("UPDATE platforms SET connection_status = 'SUSPENDED' WHERE status = 'UNREGISTERED'")
    with op.batch_alter_table("platforms") as batch:
        batch.alter_column("connection_status", server_default=None)

    op.create_table(
        "roaming_agreements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cpo_country_code", sa.String(length=2), nullable=False),
        sa.Column("cpo_party_id", sa.String(length=3), nullable=False),
        sa.Column("emsp_country_code", sa.String(length=2), nullable=False),
        sa.Column("emsp_party_id", sa.String(length=3), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roaming_agreements")),
        sa.UniqueConstraint(
            "cpo_country_code",
            "cpo_party_id",
            "emsp_country_code",
            "emsp_party_id",
            name="uq_roaming_agreements_pair",
        ),
    )
    op.create_table(
        "command_links",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("module", sa.String(length=16), nullable=False),
        sa.Column("command", sa.String(length=32), nullable=False),
        sa.Column("requester_platform_id", sa.Integer(), nullable=False),
        sa.Column("requester_country_code", sa.String(length=2), nullable=False),
        sa.Column("requester_party_id", sa.String(length=3), nullable=False),
        sa.Column("target_country_code", sa.String(length=2), nullable=False),
        sa.Column("target_party_id", sa.String(length=3), nullable=False),
        sa.Column("response_url", sa.Text(), nullable=False),
        sa.Column("reservation_id", sa.String(length=36), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("results", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["requester_platform_id"],
            ["platforms.id"],
            name=op.f("fk_command_links_requester_platform_id_platforms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_links")),
    )
    op.create_index(op.f("ix_command_links_expires_at"), "command_links", ["expires_at"], unique=False)
    op.create_index(op.f("ix_command_links_requester_platform_id"), "command_links", ["requester_platform_id"])
    op.create_index(op.f("ix_command_links_reservation_id"), "command_links", ["reservation_id"], unique=False)
    op.create_table(
        "message_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=True),
        sa.Column("from_party", sa.String(length=6), nullable=True),
        sa.Column("to_party", sa.String(length=6), nullable=True),
        sa.Column("target_platform_id", sa.Integer(), nullable=True),
        sa.Column("module", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("ocpi_status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("size_in", sa.Integer(), nullable=False),
        sa.Column("size_out", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_log")),
    )
    op.create_index(op.f("ix_message_log_at"), "message_log", ["at"], unique=False)
    op.create_index(op.f("ix_message_log_correlation_id"), "message_log", ["correlation_id"], unique=False)
    op.create_index(op.f("ix_message_log_ocpi_status"), "message_log", ["ocpi_status"], unique=False)
    op.create_index(op.f("ix_message_log_platform_id"), "message_log", ["platform_id"], unique=False)


def downgrade() -> None:
    op.drop_table("message_log")
    op.drop_table("command_links")
    op.drop_table("roaming_agreements")
    with op.batch_alter_table("platforms") as batch:
        batch.drop_column("status_changed_at")
        batch.drop_column("connection_status")
