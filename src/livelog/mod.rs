//! livelog
