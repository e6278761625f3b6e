"""settlement: commercial terms, periods, statements and their lines, disputes, adjustments

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clearing_periods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("netting", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_periods")),
        sa.UniqueConstraint("label", name=op.f("uq_clearing_periods_label")),
    )
    op.create_table(
        "clearing_terms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cpo_country_code", sa.String(length=2), nullable=False),
        sa.Column("cpo_party_id", sa.String(length=3), nullable=False),
        sa.Column("emsp_country_code", sa.String(length=2), nullable=False),
        sa.Column("emsp_party_id", sa.String(length=3), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("tolerance", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("approval_window_days", sa.Integer(), nullable=False),
        sa.Column("rounding", sa.String(length=16), nullable=False),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("fees", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_terms")),
        sa.UniqueConstraint(
            "cpo_country_code",
            "cpo_party_id",
            "emsp_country_code",
            "emsp_party_id",
            "valid_from",
            name="uq_clearing_terms_pair_valid_from",
        ),
    )
    op.create_table(
        "clearing_statements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period_id", sa.Integer(), nullable=False),
        sa.Column("cpo_country_code", sa.String(length=2), nullable=False),
        sa.Column("cpo_party_id", sa.String(length=3), nullable=False),
        sa.Column("emsp_country_code", sa.String(length=2), nullable=False),
        sa.Column("emsp_party_id", sa.String(length=3), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("terms_id", sa.Integer(), nullable=True),
        sa.Column("cdr_count", sa.Integer(), nullable=False),
        sa.Column("excluded_count", sa.Integer(), nullable=False),
        sa.Column("total_energy", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("amount_excl_vat", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("amount_incl_vat", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("adjustments", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("fees_cpo", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("fees_emsp", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("payable", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("engine_version", sa.String(length=32), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["clearing_periods.id"],
            name=op.f("fk_clearing_statements_period_id_clearing_periods"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["terms_id"],
            ["clearing_terms.id"],
            name=op.f("fk_clearing_statements_terms_id_clearing_terms"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_statements")),
        sa.UniqueConstraint(
            "period_id",
            "cpo_country_code",
            "cpo_party_id",
            "emsp_country_code",
            "emsp_party_id",
            "currency",
            name="uq_clearing_statements_period_pair_currency",
        ),
    )
    op.create_index(op.f("ix_clearing_statements_period_id"), "clearing_statements", ["period_id"], unique=False)

    op.create_table(
        "clearing_disputes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("credit_record_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["credit_record_id"],
            ["clearing_cdrs.id"],
            name=op.f("fk_clearing_disputes_credit_record_id_clearing_cdrs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["record_id"], ["clearing_cdrs.id"], name=op.f("fk_clearing_disputes_record_id_clearing_cdrs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_disputes")),
    )
    op.create_index(op.f("ix_clearing_disputes_record_id"), "clearing_disputes", ["record_id"], unique=False)

    op.create_table(
        "clearing_statement_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("statement_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=True),
        sa.Column("included", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("payer", sa.String(length=8), nullable=True),
        sa.Column("quantity", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("amount_excl_vat", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("amount_incl_vat", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["clearing_cdrs.id"],
            name=op.f("fk_clearing_statement_lines_record_id_clearing_cdrs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["clearing_statements.id"],
            name=op.f("fk_clearing_statement_lines_statement_id_clearing_statements"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_statement_lines")),
    )
    op.create_index("ix_clearing_statement_lines_record", "clearing_statement_lines", ["record_id"], unique=False)
    op.create_index(
        op.f("ix_clearing_statement_lines_statement_id"), "clearing_statement_lines", ["statement_id"], unique=False
    )

    op.create_table(
        "clearing_adjustments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dispute_id", sa.Integer(), nullable=True),
        sa.Column("record_id", sa.Integer(), nullable=True),
        sa.Column("cpo_country_code", sa.String(length=2), nullable=False),
        sa.Column("cpo_party_id", sa.String(length=3), nullable=False),
        sa.Column("emsp_country_code", sa.String(length=2), nullable=False),
        sa.Column("emsp_party_id", sa.String(length=3), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("period_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dispute_id"],
            ["clearing_disputes.id"],
            name=op.f("fk_clearing_adjustments_dispute_id_clearing_disputes"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["clearing_periods.id"],
            name=op.f("fk_clearing_adjustments_period_id_clearing_periods"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["clearing_cdrs.id"],
            name=op.f("fk_clearing_adjustments_record_id_clearing_cdrs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_adjustments")),
    )
    op.create_index(op.f("ix_clearing_adjustments_period_id"), "clearing_adjustments", ["period_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_clearing_adjustments_period_id"), table_name="clearing_adjustments")
    op.drop_table("clearing_adjustments")
    op.drop_index(op.f("ix_clearing_statement_lines_statement_id"), table_name="clearing_statement_lines")
    op.drop_index("ix_clearing_statement_lines_record", table_name="clearing_statement_lines")
    op.drop_table("clearing_statement_lines")
    op.drop_index(op.f("ix_clearing_disputes_record_id"), table_name="clearing_disputes")
    op.drop_table("clearing_disputes")
    op.drop_index(op.f("ix_clearing_statements_period_id"), table_name="clearing_statements")
    op.drop_table("clearing_statements")
    op.drop_table("clearing_terms")
    op.drop_table("clearing_periods")
