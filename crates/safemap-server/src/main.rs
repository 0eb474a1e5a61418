//! safemap server

fn main() {}
