//! Integration tests: the `infermark` binary as a user runs it.

mod cli_spec;
mod support;
