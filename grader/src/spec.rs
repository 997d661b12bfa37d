//! The spec: which checks a grade runs, what each is worth, and which must pass.
//!
//! A course writes it as a small TOML file (`--spec grade.toml`); the grader ships one,
//! `grader/grade.toml`, compiled in with `include_str!` so that `Spec::default()` needs no
//! file at run time:
//!
//! ```toml
//! [checks]
//! "A.get-root" = { weight = 4, required = true }
//! "C.overtake" = { weight = 5, required = true }
//! ```
//!
//! A check left out is not run. A name that is not a check, a key other than `weight` and
//! `required`, or a negative weight is an error naming it, so a typo never silently drops
//! a check from a course's grade.

use crate::checks::ALL;
use crate::GradeError;

/// The shipped spec.
const DEFAULT: &str = include_str!("../grade.toml");

/// One check's entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub name: String,
    /// Its points.
    pub weight: f64,
    /// A required check that fails makes the grade fail (exit status 1).
    pub required: bool,
}

/// Which checks run, in the grader's own order (series A to E), with their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub checks: Vec<CheckSpec>,
}

impl Default for Spec {
    /// The shipped `grade.toml`.
    fn default() -> Spec {
        match Spec::from_toml(DEFAULT) {
            Ok(spec) => spec,
            // The shipped file is checked by a unit test; this cannot happen in a build
            // whose tests passed.
            Err(e) => panic!("the shipped grade.toml is invalid: {e}"),
        }
    }
}

impl Spec {
    /// Reads a spec from TOML text.
    pub fn from_toml(text: &str) -> Result<Spec, GradeError> {
        let bad = |why: String| GradeError::Spec(why);
        let doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| bad(e.message().to_owned()))?;
        let table = doc
            .get("checks")
            .and_then(toml_edit::Item::as_table_like)
            .ok_or_else(|| bad("it has no [checks] table".to_owned()))?;
        let mut checks = Vec::new();
        for (name, item) in table.iter() {
            if !ALL.iter().any(|c| c.name == name) {
                return Err(GradeError::UnknownCheck {
                    name: name.to_owned(),
                    known: ALL.iter().map(|c| c.name).collect::<Vec<_>>().join(", "),
                });
            }
            checks.push(entry(name, item)?);
        }
        // The grader's order, whatever the file's.
        checks.sort_by_key(|c| ALL.iter().position(|k| k.name == c.name));
        Ok(Spec { checks })
    }

    /// The entry of check `name`, if the spec runs it.
    pub fn get(&self, name: &str) -> Option<&CheckSpec> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The same spec with only the checks whose names start with `prefix` (`"A."`).
    pub fn only(&self, prefix: &str) -> Spec {
        Spec {
            checks: self
                .checks
                .iter()
                .filter(|c| c.name.starts_with(prefix))
                .cloned()
                .collect(),
        }
    }
}

/// One entry: `{ weight = 4, required = true }`.
fn entry(name: &str, item: &toml_edit::Item) -> Result<CheckSpec, GradeError> {
    let bad = |why: String| GradeError::Spec(format!("{name}: {why}"));
    let fields = item
        .as_table_like()
        .ok_or_else(|| bad("write it as { weight = N, required = true|false }".to_owned()))?;
    let mut spec = CheckSpec {
        name: name.to_owned(),
        weight: 1.0,
        required: false,
    };
    for (key, value) in fields.iter() {
        match key {
            "weight" => {
                let weight = value
                    .as_float()
                    .or_else(|| value.as_integer().map(|i| i as f64))
                    .filter(|w| w.is_finite() && *w >= 0.0)
                    .ok_or_else(
                        || bad("weight must be a number of points, 0 or more".to_owned()),
                    )?;
                spec.weight = weight;
            }
            "required" => {
                spec.required = value
                    .as_bool()
                    .ok_or_else(|| bad("required must be true or false".to_owned()))?;
            }
            other => {
                return Err(bad(format!(
                    "{other:?} is not a setting of a check (only weight and required are)"
                )))
            }
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_spec_runs_every_check() {
        let spec = Spec::from_toml(DEFAULT).expect("the shipped spec is valid");
        let names: Vec<&str> = spec.checks.iter().map(|c| c.name.as_str()).collect();
        let all: Vec<&str> = ALL.iter().map(|c| c.name).collect();
        assert_eq!(names, all);
    }

    #[test]
    fn an_unknown_check_is_named() {
        let error = Spec::from_toml("[checks]\n\"C.overtaek\" = { weight = 1 }\n")
            .expect_err("a typo")
            .to_string();
        assert!(error.contains("\"C.overtaek\""), "{error}");
        assert!(error.contains("C.overtake"), "{error}");
    }

    #[test]
    fn bad_settings_are_refused() {
        for (text, says) in [
            ("[checks]\n\"A.body\" = { weight = -1 }\n", "weight"),
            ("[checks]\n\"A.body\" = { points = 1 }\n", "\"points\""),
            ("[checks]\n\"A.body\" = 3\n", "write it as"),
            ("nothing = 1\n", "no [checks]"),
            ("[checks\n", "not valid"),
        ] {
            let error = Spec::from_toml(text).expect_err(text).to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
