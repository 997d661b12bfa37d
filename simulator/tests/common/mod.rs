//! What the simulator's test files share.

/// Runs each listed test function (taking the engine) once on each engine, as
/// `events::name` and `threads::name`: both engines run the same clients and must give the
/// same results.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod events {
            $(
                #[test]
                fn $name() {
                    super::$name(loadgen::scenario::Engine::Events)
                }
            )*
        }
        mod threads {
            $(
                #[test]
                fn $name() {
                    super::$name(loadgen::scenario::Engine::Threads)
                }
            )*
        }
    };
}
