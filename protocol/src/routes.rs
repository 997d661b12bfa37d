//! servelab's routes, as descriptions of the work each request needs.
//!
//! Every architecture answers the same routes, so the servers differ only in how they use
//! threads, never in what they answer. The routes model the kinds of work a real server
//! does:
//!
//! | route               | work                                                        |
//! |---------------------|-------------------------------------------------------------|
//! | `GET /`             | almost none: measures the server's own overhead             |
//! | `POST /echo`        | copies the body back (the lecture's clients send a UUID)    |
//! | `POST /echo/{ms}`   | the same after a wait: the lecture's heavy request          |
//! | `GET /sleep/{ms}`   | a wait: I/O-bound work, like a database call                |
//! | `GET /factor/{n}`   | trial division: CPU-bound work                              |
//! | `GET /time`         | the server's clock, as in the Docker seed                   |
//! | `GET /stats`        | the server's counters and its architecture's own figures    |
//! | `GET /crash`        | a handler that panics, only with `--allow-crash` (the crash lab) |
//!
//! `HEAD` is accepted wherever `GET` is.
//!
//! [`route`] does not do the work: it says what the work is ([`Work`]), and the driver
//! decides how to wait for it. A thread of a blocking server sleeps through a
//! [`Work::Sleep`] and computes a [`Work::Compute`] itself; an event loop must never block,
//! so it sets a timer for the sleep and sends the computation to helper threads.

use std::time::{Duration, Instant, SystemTime};

use crate::connection::Request;
use crate::request::Method;
use crate::response::{Response, Status, OCTETS};

/// The `Allow` header of a resource that answers `GET` (and `HEAD`).
pub const ALLOW_GET: &str = "GET, HEAD";
/// The `Allow` header of a resource that answers `POST`.
pub const ALLOW_POST: &str = "POST";

/// What the routes need to know about the server.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The architecture's name, the body of `GET /`.
    pub architecture: &'static str,
    /// The longest wait `/sleep/{ms}` and `/echo/{ms}` accept.
    pub max_sleep: Duration,
    /// The most CPU time one request's computation may take before it is stopped.
    pub max_cpu: Duration,
    /// Serve `GET /crash`, whose handler panics: for the lab on crashing handlers only.
    pub allow_crash: bool,
}

/// The work a request needs before it can be answered.
#[derive(Debug)]
pub enum Work {
    /// Nothing: here is the answer.
    Respond(Response),
    /// Wait `delay`, then answer `then`. A blocking server sleeps; an event loop sets a
    /// timer.
    Sleep { delay: Duration, then: Response },
    /// CPU work: run the job (on this thread, or a helper) and answer with its result.
    Compute(Job),
    /// Answer with the server's `/stats` document, which only the server can write.
    Stats,
}

/// CPU-bound work, movable to another thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// The prime factors of `n`, if finding them takes at most `limit`.
    Factor { n: u64, limit: Duration },
    /// A handler that fails: it panics (`GET /crash`, only with `--allow-crash`).
    Crash,
}

impl Job {
    /// [`Job::run`], with a panic inside it (a bug, or `GET /crash`) turned into a `500`
    /// that closes the connection, so that the thread that ran it lives on.
    pub fn run_caught(self, wanted: &dyn Fn() -> bool) -> Response {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_while(wanted)))
            .unwrap_or_else(|_| {
                Response::error(
                    Status::InternalError,
                    "the handler failed; see the server log",
                )
                .closing()
            })
    }

    /// Does the work and returns the answer: [`Job::run_while`] for a client that stays.
    pub fn run(self) -> Response {
        self.run_while(&|| true)
    }

    /// Does the work and returns the answer. Runs as long as the work takes, but never
    /// longer than its limit (the worst case of `Factor`, a large prime near 2^64, would
    /// take seconds), and stops as soon as `wanted` says the answer is no longer wanted
    /// (its client left): `wanted` is asked between chunks of a millisecond or so.
    pub fn run_while(self, wanted: &dyn Fn() -> bool) -> Response {
        match self {
            // Unwinds like a panic, without the panic hook's message and backtrace on
            // stderr: the crash is asked for, and the lab's output stays readable.
            Job::Crash => std::panic::resume_unwind(Box::new("GET /crash")),
            Job::Factor { n, limit } => match factorise_within(n, Instant::now() + limit, wanted) {
                Ok(factors) => {
                    let factors = factors
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(" * ");
                    Response::text(Status::Ok, format!("{n} = {factors}\n"))
                }
                Err(Stopped::TimeUp) => Response::error(
                    Status::ServiceUnavailable,
                    &format!(
                        "factoring {n} needs more than the {} of CPU one request may use (--max-cpu)",
                        humanize(limit)
                    ),
                ),
                Err(Stopped::Unwanted) => Response::error(
                    Status::ServiceUnavailable,
                    "the client left, so the work was stopped",
                ),
            },
        }
    }
}

/// What `request` needs. Never blocks and never fails: bad parameters are answered with a
/// precise error status.
pub fn route(request: &Request, config: &RouteConfig) -> Work {
    if let Err(refusal) = check_method(request, config) {
        return Work::Respond(refusal);
    }
    let path = request.path.as_str();
    match path {
        "/" => Work::Respond(Response::text(
            Status::Ok,
            format!("servelab {}\n", config.architecture),
        )),
        "/echo" => Work::Respond(Response::new(Status::Ok, OCTETS, request.body.clone())),
        "/time" => Work::Respond(Response::text(
            Status::Ok,
            format!("{}\n", humantime::format_rfc3339_micros(SystemTime::now())),
        )),
        "/stats" => Work::Stats,
        "/crash" => Work::Compute(Job::Crash),
        _ => with_parameter(path, request, config),
    }
}

/// The 404 for a path with no route, or the 405 (with `Allow`) for a method the route does
/// not take.
fn check_method(request: &Request, config: &RouteConfig) -> Result<(), Response> {
    let path = request.path.as_str();
    let allowed = match path {
        "/" | "/time" | "/stats" => ALLOW_GET,
        "/crash" if config.allow_crash => ALLOW_GET,
        "/echo" => ALLOW_POST,
        _ if path.starts_with("/echo/") => ALLOW_POST,
        _ if path.starts_with("/sleep/") || path.starts_with("/factor/") => ALLOW_GET,
        _ => {
            return Err(Response::error(
                Status::NotFound,
                &format!("no route for {path}"),
            ))
        }
    };
    let method_ok = match request.method {
        Method::Get | Method::Head => allowed == ALLOW_GET,
        Method::Post => allowed == ALLOW_POST,
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
        return Err(response);
    }
    Ok(())
}

/// The routes with a parameter in their path: `/sleep/{ms}`, `/echo/{ms}`, `/factor/{n}`.
fn with_parameter(path: &str, request: &Request, config: &RouteConfig) -> Work {
    if let Some(ms) = path.strip_prefix("/sleep/") {
        match delay(ms, config) {
            Ok(delay) => Work::Sleep {
                delay,
                then: Response::text(Status::Ok, format!("slept {} ms\n", delay.as_millis())),
            },
            Err(error) => Work::Respond(error),
        }
    } else if let Some(ms) = path.strip_prefix("/echo/") {
        match delay(ms, config) {
            Ok(delay) => Work::Sleep {
                delay,
                then: Response::new(Status::Ok, OCTETS, request.body.clone()),
            },
            Err(error) => Work::Respond(error),
        }
    } else if let Some(n) = path.strip_prefix("/factor/") {
        match n.parse::<u64>() {
            Ok(n) if n >= 2 => Work::Compute(Job::Factor {
                n,
                limit: config.max_cpu,
            }),
            _ => Work::Respond(Response::error(
                Status::BadRequest,
                &format!("{n:?} is not a whole number from 2 to {}", u64::MAX),
            )),
        }
    } else {
        Work::Respond(Response::error(
            Status::NotFound,
            &format!("no route for {path}"),
        ))
    }
}

/// The `{ms}` of `/sleep/{ms}` and `/echo/{ms}`: a whole number of milliseconds up to
/// `--max-sleep`, or the 400 that says so.
fn delay(ms: &str, config: &RouteConfig) -> Result<Duration, Response> {
    let max = u64::try_from(config.max_sleep.as_millis()).unwrap_or(u64::MAX);
    match ms.parse::<u64>() {
        Ok(ms) if ms <= max => Ok(Duration::from_millis(ms)),
        _ => Err(Response::error(
            Status::BadRequest,
            &format!("{ms:?} is not a whole number of milliseconds from 0 to {max}"),
        )),
    }
}

/// Why a computation stopped before its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It reached its time limit.
    TimeUp,
    /// Its answer was no longer wanted.
    Unwanted,
}

/// Trial divisions between two looks at the clock and at `wanted`: about a millisecond.
const CHUNK: u64 = 1 << 19;

/// The prime factors of `n` in ascending order, by trial division: divide out 2, then every
/// odd number up to the square root of what remains. Pure CPU work; the worst case (a large
/// prime near 2^64) takes several seconds, which is the point of a CPU-bound route.
pub fn factorise(n: u64) -> Vec<u64> {
    factorise_within(
        n,
        Instant::now() + Duration::from_secs(86_400 * 365),
        &|| true,
    )
    .unwrap_or_default()
}

/// [`factorise`], giving up at `deadline` or as soon as `wanted` returns false (both looked
/// at every half a million divisions or so, about a millisecond of work).
pub fn factorise_within(
    mut n: u64,
    deadline: Instant,
    wanted: &dyn Fn() -> bool,
) -> Result<Vec<u64>, Stopped> {
    let mut factors = Vec::new();
    while n % 2 == 0 && n > 1 {
        factors.push(2);
        n /= 2;
    }
    let mut d = 3;
    let mut until_check = CHUNK;
    // `d <= n / d` is `d * d <= n` without overflow.
    while d <= n / d {
        while n % d == 0 {
            factors.push(d);
            n /= d;
        }
        d += 2;
        until_check -= 1;
        if until_check == 0 {
            until_check = CHUNK;
            if Instant::now() >= deadline {
                return Err(Stopped::TimeUp);
            }
            if !wanted() {
                return Err(Stopped::Unwanted);
            }
        }
    }
    if n > 1 {
        factors.push(n);
    }
    Ok(factors)
}

/// A limit for people: `2s`, `250ms`.
fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Version;

    fn get(path: &str) -> Request {
        Request {
            method: Method::Get,
            path: path.into(),
            version: Version::Http11,
            body: Vec::new(),
        }
    }

    #[test]
    fn crash_is_served_only_when_allowed() {
        let crash = Request {
            method: Method::Get,
            path: "/crash".into(),
            version: crate::request::Version::Http11,
            body: Vec::new(),
        };
        assert!(
            matches!(route(&crash, &config()), Work::Respond(r) if r.status == Status::NotFound)
        );
        let allowed = RouteConfig {
            allow_crash: true,
            ..config()
        };
        assert!(matches!(route(&crash, &allowed), Work::Compute(Job::Crash)));
    }

    fn config() -> RouteConfig {
        RouteConfig {
            allow_crash: false,
            architecture: "test",
            max_sleep: Duration::from_secs(60),
            max_cpu: Duration::from_secs(2),
        }
    }

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

    #[test]
    fn routes_say_what_work_they_need() {
        assert!(matches!(route(&get("/"), &config()), Work::Respond(r) if r.status == Status::Ok));
        assert!(matches!(
            route(&get("/sleep/250"), &config()),
            Work::Sleep { delay, .. } if delay == Duration::from_millis(250)
        ));
        assert!(matches!(
            route(&get("/factor/91"), &config()),
            Work::Compute(Job::Factor { n: 91, .. })
        ));
        assert!(matches!(route(&get("/stats"), &config()), Work::Stats));
        assert!(matches!(
            route(&get("/sleep/61000"), &config()),
            Work::Respond(r) if r.status == Status::BadRequest
        ));
        let job = Job::Factor {
            n: 91,
            limit: Duration::from_secs(1),
        };
        assert_eq!(job.run().body, b"91 = 7 * 13\n");
    }

    #[test]
    fn factoring_stops_at_its_limit_or_when_unwanted() {
        // The largest prime below 2^64: about 2^31 divisions, seconds of work.
        let prime = 18_446_744_073_709_551_557;
        let began = Instant::now();
        let job = Job::Factor {
            n: prime,
            limit: Duration::from_millis(20),
        };
        let answer = job.run();
        assert_eq!(answer.status, Status::ServiceUnavailable);
        assert!(String::from_utf8_lossy(&answer.body).contains("--max-cpu"));
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "{:?}",
            began.elapsed()
        );
        let asked = std::cell::Cell::new(0);
        let stopped = factorise_within(prime, Instant::now() + Duration::from_secs(60), &|| {
            asked.set(asked.get() + 1);
            asked.get() < 3
        });
        assert_eq!(stopped, Err(Stopped::Unwanted));
        assert_eq!(asked.get(), 3);
        assert_eq!(factorise(600_851_475_143), [71, 839, 1471, 6857]);
    }
}
