//! Fan-out (in progress).
