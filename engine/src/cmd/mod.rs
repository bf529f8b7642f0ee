//! One module per subcommand; each exposes `run(&Args) -> Result<()>`.

pub mod book;
pub mod gen;
pub mod inspect;
