//! HTTP control API (in progress).
