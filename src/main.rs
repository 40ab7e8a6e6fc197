//! Command-line entry point; all logic lives in the library.

fn main() -> std::process::ExitCode {
    gitlab_token_operator::cli::main()
}
