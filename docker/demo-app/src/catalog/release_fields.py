"""Product fields that differ between releases.

Each release overlay may replace this file; the rest of the models stay shared.
Release v1 adds nothing.
"""
from django.db import models


class ProductReleaseFields(models.Model):
    class Meta:
        abstract = True
