//! C ABI (filled in by the foundation work).
