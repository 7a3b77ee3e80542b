//! The single entry point: run, test, image, qemu, bench

fn main() {}
