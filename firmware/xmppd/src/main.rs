//! The Switchboard daemon: composition root wiring store, server and admin

fn main() {}
