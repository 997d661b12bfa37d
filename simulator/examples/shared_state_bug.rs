//! Lab 9: the lecture's shared-state bug, in Rust, and its fix.
//!
//! Run it with `cargo run -p simulator --example shared_state_bug`.
//!
//! In the lecture's threaded servers (Figures 4.8 and 4.9) every worker logged
//! "Client 127.0.0.1:40433 finished using service": the *last* client's address, five
//! times. The address lived in one global variable that the main thread overwrote at each
//! accept. Rust will not compile a global written by one thread and read by another without
//! synchronisation, but wrap the same idea in `Arc<Mutex<_>>` and it compiles, never races,
//! and is exactly as wrong: the compiler forbids data races, not sharing the wrong thing.

use simulator::labs::shared_state;

fn main() {
    let clients = shared_state::lecture_clients();
    println!("Clients accepted, in order: {clients:?}\n");
    println!("With one shared \"current client\" (the bug):");
    for (worker, line) in shared_state::serve_with_shared_current_client(&clients)
        .iter()
        .enumerate()
    {
        println!("  worker-{} {line}", worker + 1);
    }
    println!("\nWith the address moved into each worker (the fix):");
    for (worker, line) in shared_state::serve_with_per_connection_address(&clients)
        .iter()
        .enumerate()
    {
        println!("  worker-{} {line}", worker + 1);
    }
}
