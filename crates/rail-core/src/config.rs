//! Configuration: defaults, TOML or legacy JSON files, dotenv, environment, flags.
