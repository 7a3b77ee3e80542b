//! The MMP command line: one-shot, batch and interactive, over the daemon's socket or directly on the store

fn main() {}
