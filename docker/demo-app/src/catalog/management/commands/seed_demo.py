"""Create demo categories and products; running it again only tops up what is missing."""

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from catalog.models import Category, Product

CATEGORY_NAMES = ["Books", "Garden", "Kitchen", "Music", "Tools", "Toys", "Sports", "Office"]


class Command(BaseCommand):
    help = "Seed the catalog with categories and N products (idempotent: existing rows are kept)."

    def add_arguments(self, parser):
        parser.add_argument("--products", type=int, default=100, help="number of products (default 100)")
        parser.add_argument("--categories", type=int, default=5, help="number of categories (default 5, max 8)")
        parser.add_argument("--batch-size", type=int, default=1000, help="rows per INSERT (default 1000)")

    def handle(self, *args, **options):
        wanted_products = options["products"]
        wanted_categories = options["categories"]
        if wanted_products < 0:
            raise CommandError("--products must be zero or more")
        if not 1 <= wanted_categories <= len(CATEGORY_NAMES):
            raise CommandError(f"--categories must be between 1 and {len(CATEGORY_NAMES)}")

        with transaction.atomic():
            categories = []
            for name in CATEGORY_NAMES[:wanted_categories]:
                category, _ = Category.objects.get_or_create(
                    slug=name.lower(), defaults={"name": name, "description": f"Demo {name.lower()}"}
                )
                categories.append(category)

            existing = set(
                Product.objects.filter(name__startswith="Demo product ").values_list("name", flat=True)
            )
            missing = []
            for number in range(1, wanted_products + 1):
                name = f"Demo product {number:06d}"
                if name in existing:
                    continue
                missing.append(
                    Product(
                        category=categories[number % len(categories)],
                        name=name,
                        price=Decimal(number % 10_000) / 100 + Decimal("0.99"),
                    )
                )
            Product.objects.bulk_create(missing, batch_size=options["batch_size"])

        self.stdout.write(
            f"seeded {len(categories)} categories, {len(missing)} new products "
            f"({Product.objects.count()} products in total)"
        )
