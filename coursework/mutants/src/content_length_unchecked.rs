//! Mutant `content-length-unchecked`: a sequential server that parses request heads but
//! never reads the body their `Content-Length` announces.
//!
//! **Defect.** HTTP/1.1 frames a request body by its `Content-Length`: the server must
//! read exactly that many bytes after the head, no more and no fewer, or the rest of the
//! connection is read out of step. This server reads heads only (with the protocol crate's
//! `parse_head`, so every head is parsed correctly) and answers as if no body came: the
//! echo is empty, and the body's bytes are then parsed as the start of the next request.
//! Out of step is also how request smuggling begins.
//!
//! The starter cannot have this defect, because its protocol machine frames bodies for
//! it, so this mutant drives the socket by hand: the loop a student writes without the
//! machine.
//!
//! **Caught by `A.body`**: `POST /echo` with a body, then another request on the same
//! connection; the body must be consumed exactly. (The correct variant: `mutant none`.)

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use protocol::request::{parse_head, Method};
use protocol::{Request, Response};
use server_core::{work, Acceptor, Context, ServerError};

pub fn serve(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    // This server accepts by itself, so it says it is ready itself.
    let listener = acceptor.into_listener();
    ctx.set_ready();
    loop {
        // Blocks until a client connects; at shutdown the listener is shut down, and
        // accept fails at once.
        let stream = match listener.accept() {
            Ok((stream, _peer)) => stream,
            Err(_) if ctx.shutdown.is_triggered() => break,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        if ctx.shutdown.is_triggered() {
            break;
        }
        if let Err(e) = serve_by_hand(&stream, ctx) {
            tracing::debug!("connection ended: {e}");
        }
    }
    Ok(())
}

/// Serves one connection: parse a head, answer, repeat, until the client closes.
fn serve_by_hand(stream: &TcpStream, ctx: &Context) -> io::Result<()> {
    // Every wait is bounded: an idle or silent client is dropped after the keep-alive
    // timeout, and a client that reads nothing after the read timeout.
    stream.set_read_timeout(Some(
        ctx.args.keep_alive_timeout.max(Duration::from_millis(1)),
    ))?;
    stream.set_write_timeout(Some(ctx.args.read_timeout.max(Duration::from_millis(1))))?;
    let limits = ctx.args.limits();
    let server = format!("servelab-{}", ctx.arch);
    // What the client sent and no request has taken yet (a partial head, or pipelined
    // requests); a read's worth at a time; and the answer being written.
    let mut input: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut output = Vec::new();
    loop {
        match parse_head(&input, &limits) {
            Ok(Some(head)) => {
                input.drain(..head.len);
                // DEFECT: `head.content_length` bytes of body follow the head, and they are
                // never taken out of `input`: the next turn parses them as a request. The
                // fix is to read until `input` holds them and drain them into the body.
                let request = Request {
                    method: head.method.clone(),
                    path: head.path.clone(),
                    version: head.version,
                    body: Vec::new(),
                };
                let response = work::answer(&request, ctx);
                let close = !head.keep_alive || response.close;
                let with_body = head.method != Method::Head;
                response.encode(&mut output, &server, close, false, with_body);
                // Blocks until the kernel has taken the answer.
                (&*stream).write_all(&output)?;
                if close {
                    return Ok(());
                }
            }
            Ok(None) => {
                // Blocks until more bytes come, the client closes, or the timeout passes.
                let n = (&*stream).read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                input.extend_from_slice(&chunk[..n]);
            }
            Err(rejection) => {
                let response = Response::error(rejection.status, &rejection.reason);
                response.encode(&mut output, &server, true, false, true);
                return (&*stream).write_all(&output);
            }
        }
    }
}
