//! XMPP load generator: logins, message throughput, latency, per-session memory

fn main() {}
