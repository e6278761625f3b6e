"""settlement: VAT regime and currency conversion per agreement, reference rates per period (ADR 0209)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 08:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing terms and statements keep their meaning: VAT as stated on the CDRs, no conversion (ADR 0209).
    with op.batch_alter_table("clearing_terms") as batch:
        batch.add_column(sa.Column("vat_regime", sa.String(length=16), server_default="as_stated", nullable=False))
        batch.add_column(sa.Column("vat_rate", sa.Numeric(precision=20, scale=4), nullable=True))
        batch.add_column(sa.Column("vat_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("settlement_currency", sa.String(length=3), nullable=True))
        batch.add_column(sa.Column("rate_source", sa.String(length=32), nullable=True))
    with op.batch_alter_table("clearing_statements") as batch:
        batch.add_column(sa.Column("vat_regime", sa.String(length=16), server_default="as_stated", nullable=False))
        batch.add_column(sa.Column("vat_rate", sa.Numeric(precision=20, scale=4), nullable=True))
        batch.add_column(sa.Column("vat_amount", sa.Numeric(precision=20, scale=4), server_default="0", nullable=False))
        batch.add_column(sa.Column("vat_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("rates", sa.Text(), nullable=True))
    op.create_table(
        "clearing_rates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period_id", sa.Integer(), nullable=False),
        sa.Column("base_currency", sa.String(length=3), nullable=False),
        sa.Column("quote_currency", sa.String(length=3), nullable=False),
        sa.Column("rate", sa.Numeric(precision=24, scale=10), nullable=False),
        sa.Column("rate_date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["clearing_periods.id"],
            name=op.f("fk_clearing_rates_period_id_clearing_periods"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_rates")),
        sa.UniqueConstraint(
            "period_id", "base_currency", "quote_currency", "source", name="uq_clearing_rates_period_pair_source"
        ),
    )
    op.create_index(op.f("ix_clearing_rates_period_id"), "clearing_rates", ["period_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_clearing_rates_period_id"), table_name="clearing_rates")
    op.drop_table("clearing_rates")
    # Batch mode, because SQLite drops columns by copying the table.
    with op.batch_alter_table("clearing_statements") as batch:
        for column in ("rates", "vat_note", "vat_amount", "vat_rate", "vat_regime"):
            batch.drop_column(column)
    with op.batch_alter_table("clearing_terms") as batch:
        for column in ("rate_source", "settlement_currency", "vat_note", "vat_rate", "vat_regime"):
            batch.drop_column(column)
