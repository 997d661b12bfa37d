//! Starts the sequential server on an ephemeral loopback port, sends it a few requests as a
//! client would, prints each exchange, and shuts the server down.
//!
//! Run it with `cargo run -p single --example hello`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use server_core::{RunningServer, ServerArgs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = RunningServer::start(single::Single::default(), ServerArgs::default())?;
    let addr = server.addr();
    println!("servelab single is listening on {addr}\n");
    for path in ["/", "/factor/600851475143", "/sleep/250", "/nowhere"] {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes())?;
        let mut response = String::new();
        // With `Connection: close` the server closes after its answer, so read to the end.
        stream.read_to_string(&mut response)?;
        println!("> GET {path}\n{}", response.replace("\r\n", "\n"));
    }
    server.stop()?;
    println!("server stopped");
    Ok(())
}
