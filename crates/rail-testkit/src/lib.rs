//! Test support for rail: the local stack's connection settings, a fresh database per test, temp dirs.
