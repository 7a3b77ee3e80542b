//! The store's own tests use the same helpers as other crates' tests (`testing` feature),
//! compiled into the test binary from the library's source.
#![allow(dead_code, unused_imports, reason = "each test binary uses its own subset")]

pub use sb_store::testing::Changes;
