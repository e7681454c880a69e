//! Application protocols (in progress).
