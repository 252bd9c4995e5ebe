//! `sqlx::migrate!` embeds `migrations/` at compile time, but on stable Rust the macro cannot
//! tell Cargo to watch that directory: without this, a new migration file would not rebuild
//! the crate and the binary would ship the old schema.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
