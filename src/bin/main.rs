use loco_rs::cli;
use migration::Migrator;
use tessera::app::App;

/// mimalloc instead of glibc's malloc: a request allocates and frees hundreds of small
/// blocks across Tokio's worker threads, where glibc's arenas cost about a quarter of the
/// server's CPU (README, Performance). Only the server binary; tests keep the system's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    // A failed start (a bad setting, say) is one line naming what to fix, not a trace.
    if let Err(error) = cli::main::<App, Migrator>().await {
        eprintln!("tessera: {error}");
        std::process::exit(1);
    }
}
