"""Catalog app: the models the GraphQL schema is generated from."""
