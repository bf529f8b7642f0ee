//! One module per subcommand; each exposes `run(&Args) -> Result<()>`.

pub mod bench;
pub mod bench_admin;
pub mod bench_live;
pub mod bench_probes;
pub mod bench_recover;
pub mod bench_ws;
pub mod book;
pub mod config;
pub mod drain;
pub mod exchange;
pub mod gen;
pub mod inspect;
pub mod run;
pub mod ws_reader;
