//! Matchers of routes: anchored regexes, and header matchers in their current and deprecated
//! forms.

use super::fields::{at, err, Result};
use super::model::*;
use super::raw;

/// Compiles a `RegexMatcher` (`path` names it) so that it matches whole inputs only.
pub(super) fn regex(m: raw::RegexMatcher, path: &str) -> Result<Regex> {
    let rpath = at(path, "regex");
    if m.regex.is_empty() {
        return err(rpath, "empty");
    }
    // Checked alone first: an unbalanced source could otherwise escape the anchoring group.
    if let Err(e) = regex::Regex::new(&m.regex) {
        return err(rpath, format!("invalid regex: {e}"));
    }
    let compiled = regex::Regex::new(&format!(r"\A(?:{})\z", m.regex))
        .or_else(|e| err(&rpath, format!("invalid regex: {e}")))?;
    Ok(Regex { source: m.regex, compiled })
}

pub(super) fn header_matcher(h: raw::HeaderMatcher, path: &str) -> Result<HeaderMatcher> {
    if h.name.is_empty() {
        return err(at(path, "name"), "empty");
    }
    let mut rules = Vec::new();
    if let Some(s) = h.string_match {
        rules.push(string_matcher(s, &at(path, "string_match"))?);
    }
    // The deprecated forms, case-sensitive.
    let ignore_case = false;
    if let Some(value) = h.exact_match {
        rules.push(HeaderRule::Exact { value, ignore_case });
    }
    if let Some(value) = h.prefix_match {
        rules.push(HeaderRule::Prefix { value, ignore_case });
    }
    if let Some(value) = h.suffix_match {
        rules.push(HeaderRule::Suffix { value, ignore_case });
    }
    if let Some(value) = h.contains_match {
        rules.push(HeaderRule::Contains { value, ignore_case });
    }
    if let Some(re) = h.safe_regex_match {
        rules.push(HeaderRule::Regex(regex(re, &at(path, "safe_regex_match"))?));
    }
    if let Some(p) = h.present_match {
        rules.push(HeaderRule::Present(p));
    }
    if rules.len() > 1 {
        return err(path, "only one of string_match, exact_match, prefix_match, suffix_match, contains_match, safe_regex_match and present_match may be set");
    }
    // With no rule, Envoy matches on the header's presence.
    let rule = rules.pop().unwrap_or(HeaderRule::Present(true));
    Ok(HeaderMatcher { name: h.name.to_ascii_lowercase(), rule, invert: h.invert_match.unwrap_or(false) })
}

fn string_matcher(s: raw::StringMatcher, path: &str) -> Result<HeaderRule> {
    let ignore_case = s.ignore_case.unwrap_or(false);
    let nonempty = |field: &str, value: String| {
        if value.is_empty() {
            err(at(path, field), "empty")
        } else {
            Ok(value)
        }
    };
    let mut rules = Vec::new();
    if let Some(value) = s.exact {
        rules.push(HeaderRule::Exact { value, ignore_case });
    }
    if let Some(v) = s.prefix {
        rules.push(HeaderRule::Prefix { value: nonempty("prefix", v)?, ignore_case });
    }
    if let Some(v) = s.suffix {
        rules.push(HeaderRule::Suffix { value: nonempty("suffix", v)?, ignore_case });
    }
    if let Some(v) = s.contains {
        rules.push(HeaderRule::Contains { value: nonempty("contains", v)?, ignore_case });
    }
    if let Some(re) = s.safe_regex {
        // `ignore_case` has no effect on safe_regex, as in Envoy.
        rules.push(HeaderRule::Regex(regex(re, &at(path, "safe_regex"))?));
    }
    if rules.len() > 1 {
        return err(path, "only one of exact, prefix, suffix, contains and safe_regex may be set");
    }
    rules
        .pop()
        .map_or_else(|| err(path, "one of exact, prefix, suffix, contains or safe_regex is required"), Ok)
}
