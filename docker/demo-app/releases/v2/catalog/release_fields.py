"""Product fields that differ between releases: v2 adds the stock count."""
from django.db import models


class ProductReleaseFields(models.Model):
    stock = models.PositiveIntegerField(default=0, help_text="Units in stock")

    class Meta:
        abstract = True
