use std::io::BufRead;

use clap::Parser;
use server::{bootstrap, db, Application, Cli, Command};
use tracing_subscriber::EnvFilter;

/// Rendering a page allocates and frees thousands of small buffers; with glibc's allocator that
/// took about a third of a signed-in page's time (perf, 2026-12-03), so they go to mimalloc.
/// Blocks of 4 MiB and more (a password check's 19 MiB, argon2id) go to glibc, which maps each
/// on its own and returns it on free (see `keep_large_allocations_mapped`): mimalloc kept them,
/// and a burst of sign-ins left about 60 MiB more resident.
struct Allocator;

const LARGE: usize = 4 * 1024 * 1024;

// SAFETY: each block is freed or resized by the allocator that made it, chosen by its size, which
// Rust passes unchanged to `dealloc` and (as the old size) to `realloc`; a resize across the line
// moves the block to the other allocator.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            unsafe { std::alloc::System.alloc(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            unsafe { std::alloc::System.alloc_zeroed(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        if layout.size() >= LARGE {
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        } else {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        match (layout.size() >= LARGE, new_size >= LARGE) {
            (true, true) => unsafe { std::alloc::System.realloc(ptr, layout, new_size) },
            (false, false) => unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: the caller guarantees that `new_size`, rounded up to the alignment,
                // does not overflow; the old block is valid for `layout.size()` bytes.
                let new_layout = unsafe {
                    std::alloc::Layout::from_size_align_unchecked(new_size, layout.align())
                };
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
    }
}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// A password check allocates 19 MiB (argon2id), from glibc (see `Allocator`). After freeing a
/// block that large, glibc raises its mmap threshold, so later ones come from per-thread arenas
/// and stay resident: a burst of sign-ins left hundreds of MiB behind. A fixed threshold keeps
/// every large block mapped and returns it on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_allocations_mapped() {
    // SAFETY: mallopt only sets a parameter of the allocator, under its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    keep_large_allocations_mapped();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_sessions=warn")),
        )
        .init();
    server::guards::log_panics();
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Healthcheck => {
            match server::health::check(config.site_addr, std::time::Duration::from_secs(5)) {
                Ok(()) => {
                    println!("healthy");
                    Ok(())
                }
                Err(why) => {
                    eprintln!("unhealthy: {why}");
                    std::process::exit(1);
                }
            }
        }
        Command::Migrate => {
            let url = db::resolve_url(config.database_url.as_deref())?;
            db::connect_and_migrate(&url).await?;
            println!("Database is up to date.");
            Ok(())
        }
        Command::RebuildHistory { device } => {
            let url = db::resolve_url(config.database_url.as_deref())?;
            let db = db::connect_and_migrate(&url).await?;
            let done = server::history::rebuild(&db, device, config.history()).await?;
            println!(
                "Rebuilt the hourly consumption of {} device(s) from {} readings in {:.1} s.",
                done.devices, done.readings, done.seconds
            );
            Ok(())
        }
        Command::CreateAdmin {
            username,
            display_name,
        } => {
            let password = match config.admin_password.clone() {
                Some(p) => p,
                None => {
                    eprintln!("Password for {username} (one line on standard input):");
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let url = db::resolve_url(config.database_url.as_deref())?;
            let db = db::connect_and_migrate(&url).await?;
            let display_name = display_name.unwrap_or_else(|| username.clone());
            let admin = bootstrap::create_admin(&db, &username, &display_name, &password)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create admin: {e}"))?;
            println!("Created admin {} ({}).", admin.username, admin.id);
            Ok(())
        }
    }
}

async fn serve(config: server::Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    match &app.metering().local {
        Some(_) => println!("Meter readings: in-process queue (set AMQP_URL for RabbitMQ)"),
        None => println!("Meter readings: RabbitMQ"),
    }
    let url = format!("http://{}", app.state().leptos_options.site_addr);
    println!("Energy Utility Platform listening on {url}");
    if !app.demo_logins().is_empty() {
        println!("Demo accounts (passwords are new on every start):");
        for login in app.demo_logins() {
            println!(
                "  {:<6} {:<12} password {}",
                login.role.as_str(),
                login.username,
                login.password
            );
        }
        println!("Sign in at {url}/login");
    }
    let shutdown = async {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("shutting down");
    };
    match app.run_until_stopped(shutdown).await {
        Ok(()) => Ok(()),
        Err(stopped) => {
            tracing::error!("{stopped}");
            Err(stopped.into())
        }
    }
}
