//! End-to-end tests: one test binary (as in ripgrep), modules by topic, helpers in `util`.

mod cli;
mod corpus;
mod extract;
mod properties;
mod roundtrip;
mod util;
