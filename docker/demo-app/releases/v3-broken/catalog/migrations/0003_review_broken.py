# Release v3-broken: a migration that fails half-way, on purpose.
#
# It first creates the table catalog_review and fills it, then fails in a RunPython.
# The migration is not atomic, so on PostgreSQL the table and its rows stay behind
# after the failure while 0003 is not recorded as applied: the database is neither
# the v2 schema nor a v3 one, which is what a deploy tool must be able to undo.

from django.db import migrations


def fail_half_way(apps, schema_editor):
    raise RuntimeError("migration 0003_review_broken fails on purpose (release v3-broken)")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("catalog", "0002_product_stock"),
    ]

    operations = [
        migrations.RunSQL(
            sql="""
                CREATE TABLE catalog_review (
                    id bigserial PRIMARY KEY,
                    product_id bigint NOT NULL REFERENCES catalog_product (id),
                    rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
                    body text NOT NULL DEFAULT '',
                    created_at timestamptz NOT NULL DEFAULT now()
                )
            """,
            reverse_sql="DROP TABLE IF EXISTS catalog_review",
        ),
        migrations.RunSQL(
            sql="INSERT INTO catalog_review (product_id, rating) SELECT id, 5 FROM catalog_product",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.RunPython(fail_half_way, migrations.RunPython.noop),
    ]
