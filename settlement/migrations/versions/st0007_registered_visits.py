"""admissions hold registered outpatient visits too; fee lines carry their batch

The national interface registers an outpatient visit (2201), uploads its fee lines in batches
(2204), may cancel a batch (2205) and settles them at once (2207), as a stay does (2401, 2301,
2302, 2304). A registered visit is an ``admissions`` row of its kind:

* ``admissions.visit_type`` VARCHAR(16) NOT NULL DEFAULT 'inpatient' (every stored row is a
  stay);
* ``admission_fee_lines.chrg_bchno`` and ``.feedetl_sn`` VARCHAR(30), NULL: the upload's batch
  (收费批次号) and the HIS's line number (费用明细流水号), when the national interface sent them.

Plain ``ADD COLUMN`` on both backends (SQLite appends it to the table's SQL; a NOT NULL column
needs its default, which it has). Nothing stored can violate them.

Revision ID: st0007
Revises: st0006
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "st0007"
down_revision: str | Sequence[str] | None = "st0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE admissions ADD COLUMN visit_type VARCHAR(16) DEFAULT 'inpatient' NOT NULL"
    )
    op.execute("ALTER TABLE admission_fee_lines ADD COLUMN chrg_bchno VARCHAR(30)")
    op.execute("ALTER TABLE admission_fee_lines ADD COLUMN feedetl_sn VARCHAR(30)")


def downgrade() -> None:
    # Outpatient registrations would read as stays: refuse while any exists.
    bind = op.get_bind()
    count = bind.exec_driver_sql(
        "SELECT count(*) FROM admissions WHERE visit_type <> 'inpatient'"
    ).scalar_one()
    if count:
        raise RuntimeError(f"{count} registered outpatient visits exist; cannot downgrade")
    op.execute("ALTER TABLE admission_fee_lines DROP COLUMN feedetl_sn")
    op.execute("ALTER TABLE admission_fee_lines DROP COLUMN chrg_bchno")
    op.execute("ALTER TABLE admissions DROP COLUMN visit_type")
