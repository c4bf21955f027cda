//! End-to-end tests: one test binary (as in ripgrep), modules by topic, helpers in `util`.

mod cli;
mod corpus;
mod damage;
mod extract;
mod folders;
mod fuzz;
mod gguf;
mod kv;
mod low_precision;
mod properties;
mod roundtrip;
mod util;
