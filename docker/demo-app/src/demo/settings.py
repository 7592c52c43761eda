"""Settings of the demo app, read from environment variables only.

The same project runs under Docker Compose, under the native local stack and in
tests, so nothing here is host-specific: every path, URL and secret comes from
the environment, with defaults that suit a developer machine.
"""

import os
import warnings
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

# graphene-django warns about exclusions that rail-django-graphql always passes: noise only.
warnings.filterwarnings("ignore", category=UserWarning, module=r"graphene_django\.types")

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name, default):
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(url):
    """Turn postgresql://user:password@host:port/name?options into DATABASES['default']."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured("DATABASE_URL must use the postgresql:// scheme")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL names no database")
    options = dict(parse_qsl(parts.query))
    # A database that does not answer must not hang requests or health checks.
    options.setdefault("connect_timeout", "2")
    host = unquote(parts.hostname or "") if parts.hostname else ""
    # postgresql://user@/db?host=/socket/dir selects a Unix socket directory.
    host = options.pop("host", host)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": int(os.environ.get("DB_CONN_MAX_AGE", "0")),
        "OPTIONS": options,
    }


def read_release():
    """The running release: RAIL_RELEASE, else the RELEASE file written by build_release.py."""
    release = os.environ.get("RAIL_RELEASE", "").strip()
    if release:
        return release
    try:
        return (BASE_DIR / "RELEASE").read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


SECRET_KEY = os.environ.get("SECRET_KEY", "demo-insecure-key-change-me")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")

RAIL_RELEASE = read_release()
RAIL_MAINTENANCE_FILE = os.environ.get("RAIL_MAINTENANCE_FILE", "").strip() or None
RAIL_MAINTENANCE_KEY = os.environ.get("RAIL_MAINTENANCE_KEY", "").strip() or "rail:maintenance"
DEMO_ALLOW_DELAY = env_bool("DEMO_ALLOW_DELAY", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "graphene_django",
    "rail_django_graphql",
    "catalog",
]

MIDDLEWARE = [
    # First, so maintenance answers before any other work is done.
    "demo.middleware.MaintenanceMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/demoapp")
    )
}

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "demo",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            # Short timeouts: an unreachable Redis must fail fast, not hang workers.
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 2,
        },
    }
}
# Sessions live in the database so that a Redis outage only affects caching.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ.get("MEDIA_ROOT", str(BASE_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "demo.storage.ReleaseStaticFilesStorage"},
}

GRAPHENE = {"SCHEMA": "demo.schema.schema"}

# rail-django-graphql reads per-schema settings from RAIL_DJANGO_GRAPHQL[<schema name>].
# Queries need no login by default; the demo keeps it that way so that the health
# checks and the schema tools can introspect and list the catalog anonymously.
RAIL_SCHEMA_SETTINGS = {
    "excluded_apps": ["admin", "contenttypes", "sessions", "auth", "rail_django_graphql"],
    "excluded_models": [],
    "enable_introspection": True,
    "enable_graphiql": True,
    # Rebuilding the schema on every saved row is pointless here and slow (seed_demo).
    "auto_refresh_on_model_change": False,
    "enable_pagination": True,
    "auto_camelcase": False,
    # No login/register mutations: the demo has no user accounts to offer.
    "disable_security_mutations": True,
    "show_metadata": False,
}
RAIL_DJANGO_GRAPHQL = {
    "default": {
        "schema_settings": RAIL_SCHEMA_SETTINGS,
        "mutation_settings": {
            "generate_create": True,
            "generate_update": True,
            "generate_delete": True,
            "generate_bulk": False,
            "enable_bulk_operations": False,
        },
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        # The library logs every schema build at INFO and warns about optional extras.
        "rail_django_graphql": {"level": "ERROR"},
    },
}
