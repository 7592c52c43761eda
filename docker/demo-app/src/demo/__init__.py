"""The demo Django project that rail deploys, rolls back and health-checks."""
