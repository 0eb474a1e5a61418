//! safemap
