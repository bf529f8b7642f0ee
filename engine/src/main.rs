//! The `tickcore` binary: parse the command line, run the command, turn failures into one line.

fn main() {
    std::process::exit(tickcore::cli::main());
}
