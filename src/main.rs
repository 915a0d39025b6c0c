//! The `sawmill` binary: parses the command line and dispatches to `sawmill::cli`.

fn main() {
    std::process::exit(sawmill::cli::main());
}
