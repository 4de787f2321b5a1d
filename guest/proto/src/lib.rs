//! Agent protocol wire types (filled in by the guest work).
