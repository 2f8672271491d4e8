//! The `kgroup` command line; its logic is `kgroup::cli` (so its tests run it in-process).

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kgroup: error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(kgroup::cli::run(std::env::args_os(), &mut std::io::stdout(), &mut std::io::stderr()));
    std::process::exit(code);
}
