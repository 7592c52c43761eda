# Release v4: products get an optional barcode. A nullable column: v2's code keeps working while
# and after it is added, so rail deploys this release online (no maintenance window).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0002_product_stock'),
    ]

    operations = [
        migrations.AddField(
            model_name='product',
            name='barcode',
            field=models.CharField(blank=True, help_text='EAN or UPC, when known', max_length=64, null=True),
        ),
    ]
