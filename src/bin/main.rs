use loco_rs::cli;
use migration::Migrator;
use tessera::app::App;

#[tokio::main]
async fn main() {
    // A failed start (a bad setting, say) is one line naming what to fix, not a trace.
    if let Err(error) = cli::main::<App, Migrator>().await {
        eprintln!("tessera: {error}");
        std::process::exit(1);
    }
}
