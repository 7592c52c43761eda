"""Product fields that differ between releases: v2 adds the stock count, v4 an optional barcode."""
from django.db import models


class ProductReleaseFields(models.Model):
    stock = models.PositiveIntegerField(default=0, help_text="Units in stock")
    barcode = models.CharField(max_length=64, null=True, blank=True, help_text="EAN or UPC, when known")

    class Meta:
        abstract = True
