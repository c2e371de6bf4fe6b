//! Host primitives, lookup, trust and sandbox tests.
