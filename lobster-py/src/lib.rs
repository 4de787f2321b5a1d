//! Python bindings (filled in by the foundation work).
