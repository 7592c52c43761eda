"""URL routes: /graphql/, /health/, Django's admin and a small index."""
from django.contrib import admin
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from graphene_django.views import GraphQLView

from . import views
from .schema import schema

urlpatterns = [
    path("", views.index, name="index"),
    path("graphql/", csrf_exempt(GraphQLView.as_view(schema=schema, graphiql=True)), name="graphql"),
    path("health/", views.health, name="health"),
    path("admin/", admin.site.urls),
]
