//! The request handler: servelab's routes.
//!
//! Every architecture calls the same [`respond`] function, so the servers differ only in how
//! they use threads, never in what they answer. The routes are chosen to model the kinds of
//! work a real server does:
//!
//! | route               | work                                             |
//! |---------------------|--------------------------------------------------|
//! | `GET /`             | almost none: measures the server's own overhead  |
//! | `POST /echo`        | copies the body back (the lecture echoes a UUID) |
//! | `POST /echo/{ms}`   | the same after blocking `ms` milliseconds: the lecture's heavy request |
//! | `GET /sleep/{ms}`   | blocks the thread: I/O-bound work, like a database call |
//! | `GET /factor/{n}`   | trial division: CPU-bound work                   |
//! | `GET /time`         | the server's clock, as in the Docker seed        |
//! | `GET /stats`        | counters and the architecture's own figures      |
//!
//! `HEAD` is accepted wherever `GET` is.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, SystemTime};

use crate::conn::Request;
use crate::context::Context;
use crate::request::Method;
use crate::response::{Response, Status, JSON, OCTETS};

const GET: &str = "GET, HEAD";
const POST: &str = "POST";

/// Computes the response to `request`. A panic inside a route (a bug) becomes a 500 that
/// closes the connection, instead of a lost response and a dead thread.
pub fn respond(request: &Request, ctx: &Context) -> Response {
    catch_unwind(AssertUnwindSafe(|| route(request, ctx))).unwrap_or_else(|_| {
        Response::error(
            Status::InternalError,
            "the handler failed; see the server log",
        )
        .closing()
    })
}

fn route(request: &Request, ctx: &Context) -> Response {
    let path = request.path.as_str();
    let allowed = match path {
        "/" | "/time" | "/stats" => GET,
        "/echo" => POST,
        _ if path.starts_with("/echo/") => POST,
        _ if path.starts_with("/sleep/") || path.starts_with("/factor/") => GET,
        _ => return Response::error(Status::NotFound, &format!("no route for {path}")),
    };
    let method_ok = match request.method {
        Method::Get | Method::Head => allowed == GET,
        Method::Post => allowed == POST,
        Method::Other(_) => false,
    };
    if !method_ok {
        let mut response = Response::error(
            Status::MethodNotAllowed,
            &format!(
                "{} is not allowed on {path}; use {allowed}",
                request.method.as_str()
            ),
        );
        response.allow = Some(allowed);
        return response;
    }

    match path {
        "/" => Response::text(Status::Ok, format!("servelab {}\n", ctx.arch)),
        "/echo" => Response::new(Status::Ok, OCTETS, request.body.clone()),
        "/time" => Response::text(
            Status::Ok,
            format!("{}\n", humantime::format_rfc3339_micros(SystemTime::now())),
        ),
        "/stats" => {
            let mut body = serde_json::to_vec_pretty(&ctx.snapshot()).unwrap_or_default();
            body.push(b'\n');
            Response::new(Status::Ok, JSON, body)
        }
        _ => {
            if let Some(ms) = path.strip_prefix("/sleep/") {
                sleep(ms, ctx).map_or_else(
                    |error| error,
                    |ms| Response::text(Status::Ok, format!("slept {ms} ms\n")),
                )
            } else if let Some(ms) = path.strip_prefix("/echo/") {
                sleep(ms, ctx).map_or_else(
                    |error| error,
                    |_| Response::new(Status::Ok, OCTETS, request.body.clone()),
                )
            } else if let Some(n) = path.strip_prefix("/factor/") {
                factor_route(n)
            } else {
                Response::error(Status::NotFound, &format!("no route for {path}"))
            }
        }
    }
}

/// `GET /sleep/{ms}` and `POST /echo/{ms}`: blocks this thread for `ms` milliseconds, like a
/// handler waiting for a slow disk or database. While it sleeps the thread can do nothing
/// else: that is what makes these routes show the difference between the architectures.
/// Returns the delay, or the 400 for a delay that is not a number up to `--max-sleep`.
fn sleep(ms: &str, ctx: &Context) -> Result<u64, Response> {
    let max = u64::try_from(ctx.args.max_sleep.as_millis()).unwrap_or(u64::MAX);
    match ms.parse::<u64>() {
        Ok(ms) if ms <= max => {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(ms)
        }
        _ => Err(Response::error(
            Status::BadRequest,
            &format!("{ms:?} is not a whole number of milliseconds from 0 to {max}"),
        )),
    }
}

/// `GET /factor/{n}`: the prime factors of `n`, found by trial division.
fn factor_route(n: &str) -> Response {
    match n.parse::<u64>() {
        Ok(n) if n >= 2 => {
            let factors = factorise(n)
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" * ");
            Response::text(Status::Ok, format!("{n} = {factors}\n"))
        }
        _ => Response::error(
            Status::BadRequest,
            &format!("{n:?} is not a whole number from 2 to {}", u64::MAX),
        ),
    }
}

/// The prime factors of `n` in ascending order, by trial division: divide out 2, then every
/// odd number up to the square root of what remains. Pure CPU work; the worst case (a large
/// prime near 2^64) takes several seconds, which is the point of a CPU-bound route.
pub fn factorise(mut n: u64) -> Vec<u64> {
    let mut factors = Vec::new();
    while n % 2 == 0 && n > 1 {
        factors.push(2);
        n /= 2;
    }
    let mut d = 3;
    // `d <= n / d` is `d * d <= n` without overflow.
    while d <= n / d {
        while n % d == 0 {
            factors.push(d);
            n /= d;
        }
        d += 2;
    }
    if n > 1 {
        factors.push(n);
    }
    factors
}

#[cfg(test)]
mod tests {
    use super::factorise;

    #[test]
    fn factorises() {
        assert_eq!(factorise(600_851_475_143), vec![71, 839, 1471, 6857]);
        assert_eq!(factorise(2), vec![2]);
        assert_eq!(factorise(1024), vec![2; 10]);
        assert_eq!(factorise(97), vec![97]);
        // The top of the range: the loop bound must not overflow.
        assert_eq!(
            factorise(u64::MAX),
            vec![3, 5, 17, 257, 641, 65537, 6_700_417]
        );
    }
}
