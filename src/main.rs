//! The `infermark` binary: parse the command line, run, exit with the code
//! the `cli` table gives.

fn main() -> std::process::ExitCode {
    infermark::cli::main()
}
