//! Names that look alike: a new user, group or file name whose Unicode
//! TR39 skeleton (`unicode-security`: confusable characters mapped to one
//! prototype, so `bоb` with a Cyrillic `о`, `Iris` and `lris`, `rn` and
//! `m` each share one) equals that of another name in the same namespace
//! is refused, naming the existing one. Identical names are not
//! "confusable": they are the same name, and the usual rules apply.
//!
//! Users are many (up to `USERS_MAX`), so the state keeps a skeleton ->
//! user index (derived, rebuilt from the users on load); groups and a
//! group's files are bounded by `LIST_LEN_MAX` and are compared on the
//! fly. Skeletons are a pure function of the name: deterministic.

/// The TR39 skeleton of `name`.
pub(super) fn skeleton(name: &str) -> String {
    unicode_security::skeleton(name).collect()
}

/// The first of `existing` that differs from `name` but has its skeleton.
pub(super) fn lookalike<'a, T: AsRef<str> + 'a>(
    name: &str,
    existing: impl IntoIterator<Item = &'a T>,
) -> Option<&'a T> {
    let sk = skeleton(name);
    existing
        .into_iter()
        .find(|e| e.as_ref() != name && skeleton(e.as_ref()) == sk)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attacks from issue 16 and a few classics are lookalikes;
    /// distinct names, the same name, and `a..b` are not.
    #[test]
    fn skeletons_catch_lookalikes() {
        for (a, b) in [
            ("bob", "b\u{43e}b"),
            ("paypal", "p\u{430}yp\u{430}l"),
            ("Iris", "lris"),
            ("modern", "rnodern"),
            ("g1", "g\u{406}"),
        ] {
            assert_eq!(skeleton(a), skeleton(b), "{a} vs {b}");
            assert_eq!(lookalike(b, &[a.to_string()]), Some(&a.to_string()));
        }
        for (a, b) in [("bob", "rob"), ("a..b", "a.b"), ("g1", "g2")] {
            assert_ne!(skeleton(a), skeleton(b), "{a} vs {b}");
        }
        let same = ["bob".to_string()];
        assert_eq!(lookalike("bob", &same), None);
    }
}
