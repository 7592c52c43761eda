//! Exit codes of every rail binary. They are API: scripts and CI branch on them.
//! `docs/exit-codes.md` documents the same table.

/// The operation succeeded (or, for `healthcheck`, nothing is critical).
pub const SUCCESS: u8 = 0;
/// The operation failed: a deploy failed before changing anything, a check is critical,
/// a breaking schema change was found.
pub const FAILED: u8 = 1;
/// Usage or configuration error: nothing was attempted.
pub const USAGE: u8 = 2;
/// Refused: a lock is held, a backup failed verification, a confirmation was declined.
pub const REFUSED: u8 = 3;
/// The operation failed and everything it changed was rolled back.
pub const ROLLED_BACK: u8 = 4;
/// The operation failed and so did its rollback: a human must look.
pub const ROLLBACK_FAILED: u8 = 5;
