"""clearing intake: clearing records per CDR, findings, price checks, state events, rejected intake attempts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The state history is append-only (ADR 0204): PostgreSQL refuses UPDATE and DELETE of an event; SQLite refuses
# UPDATE (the embedded test fixtures empty tables with DELETE). TRUNCATE is not affected.
_PG_FUNCTION = """
CREATE FUNCTION clearing_cdr_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'clearing_cdr_events is append-only: % refused', TG_OP;
END
$$
"""
_PG_TRIGGER = """
CREATE TRIGGER clearing_cdr_events_append_only BEFORE UPDATE OR DELETE ON clearing_cdr_events
FOR EACH ROW EXECUTE FUNCTION clearing_cdr_events_append_only()
"""
_SQLITE_TRIGGER = """
CREATE TRIGGER clearing_cdr_events_append_only BEFORE UPDATE ON clearing_cdr_events
BEGIN
    SELECT RAISE(ABORT, 'clearing_cdr_events is append-only: UPDATE refused');
END
"""


def upgrade() -> None:
    op.create_table(
        "clearing_cdrs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("party_id", sa.String(length=3), nullable=False),
        sa.Column("cdr_id", sa.String(length=39), nullable=False),
        sa.Column("emsp_country_code", sa.String(length=2), nullable=True),
        sa.Column("emsp_party_id", sa.String(length=3), nullable=True),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("credit", sa.Boolean(), nullable=False),
        sa.Column("credit_reference_id", sa.String(length=39), nullable=True),
        sa.Column("credits_record_id", sa.Integer(), nullable=True),
        sa.Column("token_uid", sa.String(length=36), nullable=True),
        sa.Column("token_type", sa.String(length=16), nullable=True),
        sa.Column("location_id", sa.String(length=36), nullable=True),
        sa.Column("evse_uid", sa.String(length=36), nullable=True),
        sa.Column("start_date_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_date_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("total_cost_excl_vat", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("total_cost_incl_vat", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("total_energy", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_ref", sa.String(length=255), nullable=True),
        sa.Column("store_row_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_match", sa.String(length=16), nullable=False),
        sa.Column("token_match", sa.String(length=16), nullable=False),
        sa.Column("location_match", sa.String(length=16), nullable=False),
        sa.Column("tariff_source", sa.String(length=16), nullable=False),
        sa.Column("links", sa.Text(), nullable=False),
        sa.Column("delivery_state", sa.String(length=16), nullable=False),
        sa.Column("validation_state", sa.String(length=16), nullable=False),
        sa.Column("pricing_state", sa.String(length=16), nullable=False),
        sa.Column("commercial_state", sa.String(length=16), nullable=False),
        sa.Column("settlement_state", sa.String(length=16), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("warning_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["credits_record_id"],
            ["clearing_cdrs.id"],
            name=op.f("fk_clearing_cdrs_credits_record_id_clearing_cdrs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["store_row_id"], ["cdrs.id"], name=op.f("fk_clearing_cdrs_store_row_id_cdrs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_cdrs")),
        sa.UniqueConstraint(
            "country_code", "party_id", "cdr_id", name=op.f("uq_clearing_cdrs_country_code_party_id_cdr_id")
        ),
        sa.UniqueConstraint("store_row_id", name=op.f("uq_clearing_cdrs_store_row_id")),
    )
    op.create_index(
        "ix_clearing_cdrs_credit_reference",
        "clearing_cdrs",
        ["country_code", "party_id", "credit_reference_id"],
        unique=False,
    )
    op.create_index(op.f("ix_clearing_cdrs_credits_record_id"), "clearing_cdrs", ["credits_record_id"], unique=False)
    op.create_index(op.f("ix_clearing_cdrs_pricing_state"), "clearing_cdrs", ["pricing_state"], unique=False)
    op.create_index(
        "ix_clearing_cdrs_session", "clearing_cdrs", ["country_code", "party_id", "session_id"], unique=False
    )
    op.create_index("ix_clearing_cdrs_token_start", "clearing_cdrs", ["token_uid", "start_date_time"], unique=False)
    op.create_index(op.f("ix_clearing_cdrs_validation_state"), "clearing_cdrs", ["validation_state"], unique=False)
    op.create_table(
        "clearing_cdr_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"], ["clearing_cdrs.id"], name=op.f("fk_clearing_cdr_events_record_id_clearing_cdrs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_cdr_events")),
    )
    op.create_index(op.f("ix_clearing_cdr_events_record_id"), "clearing_cdr_events", ["record_id"], unique=False)
    op.create_table(
        "clearing_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("pointer", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["clearing_cdrs.id"],
            name=op.f("fk_clearing_findings_record_id_clearing_cdrs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_findings")),
    )
    op.create_index(op.f("ix_clearing_findings_code"), "clearing_findings", ["code"], unique=False)
    op.create_index(op.f("ix_clearing_findings_record_id"), "clearing_findings", ["record_id"], unique=False)
    op.create_table(
        "clearing_intake_rejections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_ref", sa.String(length=255), nullable=True),
        sa.Column("store_row_id", sa.Integer(), nullable=True),
        sa.Column("country_code", sa.String(length=2), nullable=True),
        sa.Column("party_id", sa.String(length=3), nullable=True),
        sa.Column("cdr_id", sa.String(length=39), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("existing_record_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["existing_record_id"],
            ["clearing_cdrs.id"],
            name=op.f("fk_clearing_intake_rejections_existing_record_id_clearing_cdrs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["store_row_id"],
            ["cdrs.id"],
            name=op.f("fk_clearing_intake_rejections_store_row_id_cdrs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_intake_rejections")),
    )
    op.create_index(
        op.f("ix_clearing_intake_rejections_content_hash"), "clearing_intake_rejections", ["content_hash"], unique=False
    )
    op.create_index(
        op.f("ix_clearing_intake_rejections_store_row_id"), "clearing_intake_rejections", ["store_row_id"], unique=False
    )
    op.create_table(
        "clearing_price_checks",
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tolerance", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=True),
        sa.Column("tariff_source", sa.String(length=16), nullable=False),
        sa.Column("computed", sa.Text(), nullable=True),
        sa.Column("differences", sa.Text(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=True),
        sa.Column("warnings", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["clearing_cdrs.id"],
            name=op.f("fk_clearing_price_checks_record_id_clearing_cdrs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_clearing_price_checks")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    op.drop_table("clearing_price_checks")
    op.drop_index(op.f("ix_clearing_intake_rejections_store_row_id"), table_name="clearing_intake_rejections")
    op.drop_index(op.f("ix_clearing_intake_rejections_content_hash"), table_name="clearing_intake_rejections")
    op.drop_table("clearing_intake_rejections")
    op.drop_index(op.f("ix_clearing_findings_record_id"), table_name="clearing_findings")
    op.drop_index(op.f("ix_clearing_findings_code"), table_name="clearing_findings")
    op.drop_table("clearing_findings")
    op.drop_index(op.f("ix_clearing_cdr_events_record_id"), table_name="clearing_cdr_events")
    op.drop_table("clearing_cdr_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION clearing_cdr_events_append_only()")
    op.drop_index(op.f("ix_clearing_cdrs_validation_state"), table_name="clearing_cdrs")
    op.drop_index("ix_clearing_cdrs_token_start", table_name="clearing_cdrs")
    op.drop_index("ix_clearing_cdrs_session", table_name="clearing_cdrs")
    op.drop_index(op.f("ix_clearing_cdrs_pricing_state"), table_name="clearing_cdrs")
    op.drop_index(op.f("ix_clearing_cdrs_credits_record_id"), table_name="clearing_cdrs")
    op.drop_index("ix_clearing_cdrs_credit_reference", table_name="clearing_cdrs")
    op.drop_table("clearing_cdrs")
