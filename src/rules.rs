//! Rules: which keys are sealed (docs/design.md §3).
//!
//! A rule has a key pattern in Redis glob syntax and its policies. A pattern
//! that is a plain `prefix*` (no other glob characters) is matched by prefix,
//! an exact name by equality, anything else by a glob matcher with Redis's
//! `stringmatchlen` semantics (`*`, `?`, `[a-z]`, `[^…]`, `\` escapes).
//! Keys that match no rule are never touched.

use crate::commands::DataType;

/// What the client sees when a sealed value cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// A null reply: the application sees "no value" (a session store sees
    /// no session and the user logs in again). The default.
    Nil,
    /// An error reply.
    Error,
}

/// What happens to a value without the envelope magic on a sealed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyPolicy {
    /// Treated like a decrypt failure. The default.
    Reject,
    /// Passed through as plaintext (migration mode; counted).
    Pass,
    /// Passed through and re-sealed in Redis on read (migration mode).
    Reseal,
}

/// A key pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Every key starting with these bytes (`prefix*`).
    Prefix(Vec<u8>),
    /// Exactly this key.
    Exact(Vec<u8>),
    /// A general Redis glob.
    Glob(Vec<u8>),
}

impl Pattern {
    /// Compile a Redis glob.
    pub fn new(glob: &str) -> Self {
        let b = glob.as_bytes();
        let special = |c: &u8| matches!(c, b'*' | b'?' | b'[' | b'\\');
        match b.split_last() {
            Some((b'*', rest)) if !rest.iter().any(special) => Pattern::Prefix(rest.to_vec()),
            _ if !b.iter().any(special) => Pattern::Exact(b.to_vec()),
            _ => Pattern::Glob(b.to_vec()),
        }
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            Pattern::Prefix(p) => key.starts_with(p),
            Pattern::Exact(p) => key == p.as_slice(),
            Pattern::Glob(g) => glob_match(g, key),
        }
    }
}

/// ` (fields …)` for a hash rule's description.
fn fields_note(r: &Rule) -> String {
    match &r.fields {
        Some(Pattern::Prefix(p)) => format!(" (fields {:?}*)", String::from_utf8_lossy(p)),
        Some(Pattern::Exact(p) | Pattern::Glob(p)) => format!(" (fields {:?})", String::from_utf8_lossy(p)),
        None => String::new(),
    }
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The pattern as configured (used in error messages instead of keys).
    pub source: String,
    /// The compiled pattern.
    pub pattern: Pattern,
    /// Decrypt-failure policy.
    pub on_failure: FailurePolicy,
    /// Legacy plaintext policy.
    pub legacy: LegacyPolicy,
    /// Until when (unix seconds) legacy plaintext is accepted; after that,
    /// `Pass`/`Reseal` act as `Reject`. None = no end.
    pub legacy_until: Option<u64>,
    /// Values sealed longer ago than this many seconds do not open.
    pub max_age: Option<u64>,
    /// With `max_age`: how many seconds a value's `issued_at` may lie in the
    /// future (clock skew) before it does not open (reason `future`).
    pub future_skew: u64,
    /// Collection types whose plaintext members may live under names this
    /// rule matches (`allow_plaintext`; none by default: a list, set,
    /// sorted set, stream, geo index or HyperLogLog on a sealed name is
    /// refused, since its members could never be sealed).
    pub allow_plaintext: Vec<DataType>,
    /// `seal = false`: names this rule matches are exempt from the rules
    /// after it (first match wins). Default true.
    pub seal: bool,
    /// `fields = "GLOB"`: a hash rule; the values of the hash fields this
    /// glob matches are sealed (bound to key and field). None: hash
    /// commands on the rule's names are refused.
    pub fields: Option<Pattern>,
    /// `names = "pseudonymise"`: every key name starting with this rule's
    /// literal prefix is stored in Redis under a pseudonym
    /// ([`crate::sealing::names`]). Default false.
    pub pseudonymise: bool,
}

impl Rule {
    /// A rule with default policies.
    pub fn new(pattern: &str) -> Self {
        Rule {
            source: pattern.to_string(),
            pattern: Pattern::new(pattern),
            on_failure: FailurePolicy::Nil,
            legacy: LegacyPolicy::Reject,
            legacy_until: None,
            max_age: None,
            future_skew: crate::crypto::Freshness::DEFAULT_SKEW,
            allow_plaintext: Vec::new(),
            seal: true,
            fields: None,
            pseudonymise: false,
        }
    }

    /// The pattern's literal prefix: the bytes before its first glob
    /// character (all of an exact name).
    pub fn literal_prefix(&self) -> &[u8] {
        let s = self.source.as_bytes();
        let end = s.iter().position(|c| matches!(c, b'*' | b'?' | b'[' | b'\\')).unwrap_or(s.len());
        &s[..end]
    }

    /// Whether the value of hash field `field` under this rule's names is sealed.
    pub fn seals_field(&self, field: &[u8]) -> bool {
        self.fields.as_ref().is_some_and(|f| f.matches(field))
    }

    /// The freshness check values of this rule get, if any.
    pub fn freshness(&self) -> Option<crate::crypto::Freshness> {
        self.max_age.map(|max_age| crate::crypto::Freshness { max_age, future_skew: self.future_skew })
    }

    /// Whether plaintext members of `t` may live under names this rule matches.
    pub fn allows(&self, t: DataType) -> bool {
        self.allow_plaintext.contains(&t)
    }

    /// The longest literal run of the pattern (at least 3 bytes), looked for
    /// inside script bodies: a script that writes `sess:…` names them there.
    pub fn needle(&self) -> Option<&[u8]> {
        let raw: &[u8] = match &self.pattern {
            Pattern::Prefix(p) | Pattern::Exact(p) => p,
            Pattern::Glob(g) => g
                .split(|c| matches!(c, b'*' | b'?' | b'[' | b']' | b'\\'))
                .max_by_key(|run| run.len())
                .unwrap_or_default(),
        };
        (raw.len() >= 3).then_some(raw)
    }

    /// The legacy policy in force at `now`.
    pub fn legacy_at(&self, now: u64) -> LegacyPolicy {
        match self.legacy_until {
            Some(until) if now >= until => LegacyPolicy::Reject,
            _ => self.legacy,
        }
    }
}

/// The configured rules, first match wins: key rules, and channel rules
/// (`channel = "GLOB"`) for pub/sub payloads.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    channels: Vec<Rule>,
    /// The pseudonymised namespaces: literal prefixes of the rules with
    /// `names = "pseudonymise"`, longest first, each with its first rule.
    namespaces: Vec<(Vec<u8>, usize)>,
}

/// No rules (a configuration without a sealer seals nothing).
pub static NONE: Rules = Rules { rules: Vec::new(), channels: Vec::new(), namespaces: Vec::new() };

impl Rules {
    /// Key rules in priority order.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self::with_channels(rules, Vec::new())
    }

    /// Key rules and channel rules, each in priority order.
    pub fn with_channels(rules: Vec<Rule>, channels: Vec<Rule>) -> Self {
        let mut namespaces: Vec<(Vec<u8>, usize)> = Vec::new();
        for (i, r) in rules.iter().enumerate().filter(|(_, r)| r.pseudonymise) {
            let prefix = r.literal_prefix();
            if !namespaces.iter().any(|(p, _)| p == prefix) {
                namespaces.push((prefix.to_vec(), i));
            }
        }
        namespaces.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Rules { rules, channels, namespaces }
    }

    /// Whether any name is pseudonymised.
    pub fn pseudonymises(&self) -> bool {
        !self.namespaces.is_empty()
    }

    /// The pseudonymised namespace `key` belongs to: the longest prefix of
    /// a rule with `names = "pseudonymise"` that it starts with, whatever
    /// rule the whole name matches (a namespace is wholly pseudonymised,
    /// or a plain name in it could be mistaken for a pseudonym).
    pub fn namespace(&self, key: &[u8]) -> Option<&[u8]> {
        self.namespaces.iter().find(|(p, _)| key.starts_with(p)).map(|(p, _)| p.as_slice())
    }

    /// Every pseudonymised namespace, longest first.
    pub fn all_namespaces(&self) -> impl Iterator<Item = &[u8]> {
        self.namespaces.iter().map(|(p, _)| p.as_slice())
    }

    /// The first rule that pseudonymises names, if any.
    pub fn first_names(&self) -> Option<usize> {
        self.namespaces.iter().map(|&(_, r)| r).min()
    }

    /// The namespaces a stored name could belong to, longest first.
    pub fn namespaces_of<'a>(&'a self, stored: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.namespaces.iter().filter(move |(p, _)| stored.starts_with(p)).map(|(p, _)| p.as_slice())
    }

    /// The rule that made `key`'s namespace, if it has one (for messages).
    pub fn names_rule(&self, key: &[u8]) -> Option<usize> {
        self.namespaces.iter().find(|(p, _)| key.starts_with(p)).map(|&(_, r)| r)
    }

    /// The first rule whose namespace a script body (or argument) names:
    /// it starts with the prefix, or contains a prefix of 3 bytes or more.
    /// An empty prefix (every name) is named by every script.
    pub fn names_in_script(&self, arg: &[u8]) -> Option<usize> {
        self.namespaces
            .iter()
            .find(|(p, _)| p.len() < 3 || arg.windows(p.len()).any(|w| w == p.as_slice()))
            .map(|&(_, r)| r)
    }

    /// The first namespace some name starting with `prefix` could fall in
    /// (DEBUG POPULATE), with its rule.
    pub fn names_by_prefix(&self, prefix: &[u8]) -> Option<usize> {
        self.namespaces.iter().find(|(p, _)| p.starts_with(prefix) || prefix.starts_with(p)).map(|&(_, r)| r)
    }

    /// The patterns of the sealing key rules, in order (what `inspect`,
    /// `check` and `rewrap` walk; exemptions are not walked).
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().filter(|r| r.seal).map(|r| r.source.as_str())
    }

    /// What `next` stops sealing that these rules seal: each sealing rule
    /// (key or channel) with no sealing rule of the same pattern and fields
    /// in `next`, and each exemption (`seal = false`) `next` adds. Values
    /// sealed under such a rule would come back as envelopes, and new
    /// writes would be stored in plaintext. Added rules and changed
    /// policies stop nothing.
    pub fn dropped_by(&self, next: &Rules) -> Vec<String> {
        fn kept(r: &Rule, in_next: &[Rule]) -> bool {
            in_next.iter().any(|n| n.seal == r.seal && n.source == r.source && n.fields == r.fields)
        }
        let mut out = Vec::new();
        for (mine, theirs, kind) in [(&self.rules, &next.rules, "key"), (&self.channels, &next.channels, "channel")] {
            for r in mine.iter().filter(|r| r.seal && !kept(r, theirs)) {
                out.push(format!("{kind} rule {:?}{} no longer seals", r.source, fields_note(r)));
            }
            for n in theirs.iter().filter(|n| !n.seal && !kept(n, mine)) {
                out.push(format!("new {kind} exemption {:?} (seal = false)", n.source));
            }
        }
        // Names stored under pseudonyms are found only while their
        // namespace stays pseudonymised (and plain names only while theirs
        // is not).
        for (p, _) in &self.namespaces {
            if !next.namespaces.iter().any(|(q, _)| q == p) {
                out.push(format!("names under {:?} no longer pseudonymised", String::from_utf8_lossy(p)));
            }
        }
        for (q, _) in &next.namespaces {
            if !self.namespaces.iter().any(|(p, _)| p == q) {
                out.push(format!("names under {:?} newly pseudonymised", String::from_utf8_lossy(q)));
            }
        }
        out
    }

    /// No rules: nothing is sealed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.channels.is_empty()
    }

    /// The index of the first rule matching `key`, if it seals (a
    /// `seal = false` rule that matches first exempts the name).
    pub fn find(&self, key: &[u8]) -> Option<usize> {
        let i = self.rules.iter().position(|r| r.pattern.matches(key))?;
        self.rules[i].seal.then_some(i)
    }

    /// The first key rule that seals, if any.
    pub fn first_sealing(&self) -> Option<usize> {
        self.rules.iter().position(|r| r.seal)
    }

    /// Whether the first rule matching `key` is a `seal = false` exemption
    /// (such a name may receive a sealed value's plaintext by RENAME/COPY).
    pub fn exempts(&self, key: &[u8]) -> bool {
        self.rules.iter().find(|r| r.pattern.matches(key)).is_some_and(|r| !r.seal)
    }

    /// The index of the first channel rule matching `channel`, if it seals.
    pub fn find_channel(&self, channel: &[u8]) -> Option<usize> {
        let i = self.channels.iter().position(|r| r.pattern.matches(channel))?;
        self.channels[i].seal.then_some(i)
    }

    /// Channel rule by index (as returned by [`Rules::find_channel`]).
    pub fn channel(&self, i: usize) -> &Rule {
        &self.channels[i]
    }

    /// Whether any channel rule is configured.
    pub fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    /// The first rule that `arg` matches or, for a script body, names
    /// (contains the literal part of).
    pub fn find_in_script(&self, arg: &[u8]) -> Option<usize> {
        if self.exempts(arg) {
            // A name a `seal = false` rule exempts (phpredis's *_LOCK keys).
            return None;
        }
        self.find(arg).or_else(|| {
            self.rules.iter().position(|r| r.seal && r.needle().is_some_and(|n| arg.windows(n.len()).any(|w| w == n)))
        })
    }

    /// The first channel rule that `arg` matches or, for a script body,
    /// names (contains the literal part of): a script's PUBLISH would send
    /// a plaintext payload on a sealed channel.
    pub fn find_channel_in_script(&self, arg: &[u8]) -> Option<usize> {
        self.find_channel(arg).or_else(|| {
            self.channels
                .iter()
                .position(|r| r.seal && r.needle().is_some_and(|n| arg.windows(n.len()).any(|w| w == n)))
        })
    }

    /// The first sealing key rule that some name starting with `prefix`
    /// could match (DEBUG POPULATE makes names `<prefix>:<n>`). Conservative:
    /// a `seal = false` rule before it does not count.
    pub fn find_by_prefix(&self, prefix: &[u8]) -> Option<usize> {
        self.rules.iter().position(|r| r.seal && could_match_with_prefix(r.source.as_bytes(), prefix))
    }

    /// Rule by index (as returned by [`Rules::find`]).
    pub fn get(&self, i: usize) -> &Rule {
        &self.rules[i]
    }
}

/// Whether some string that starts with `prefix` matches the glob
/// `pattern`: true as soon as a `*` is reached or the prefix runs out
/// (anything can follow), false when a literal differs. A character class
/// is taken to match any one byte (conservative).
pub fn could_match_with_prefix(pattern: &[u8], prefix: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    loop {
        if s == prefix.len() {
            return true;
        }
        match pattern.get(p) {
            None => return false,
            Some(b'*') => return true,
            Some(b'?') => p += 1,
            Some(b'[') => {
                // Skip to the class's end (a `]` right after `[` or `[^`
                // belongs to the class).
                let mut q = p + 1;
                if pattern.get(q) == Some(&b'^') {
                    q += 1;
                }
                q += 1;
                while q < pattern.len() && pattern[q] != b']' {
                    q += if pattern[q] == b'\\' { 2 } else { 1 };
                }
                p = q + 1;
            }
            Some(b'\\') => {
                if pattern.get(p + 1) != Some(&prefix[s]) {
                    return false;
                }
                p += 2;
            }
            Some(&c) => {
                if c != prefix[s] {
                    return false;
                }
                p += 1;
            }
        }
        s += 1;
    }
}

/// Redis's `stringmatchlen`, iterative with backtracking on `*`.
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p + 1 < pattern.len() && pattern[p + 1] == b'*' {
                        p += 1;
                    }
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                b'?' if i < s.len() => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' if i < s.len() => {
                    if let Some((matched, next)) = class_match(pattern, p, s[i])
                        && matched
                    {
                        p = next;
                        i += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && i < s.len() && pattern[p + 1] == s[i] => {
                    p += 2;
                    i += 1;
                    continue;
                }
                c if c != b'?' && c != b'[' && !(c == b'\\' && p + 1 < pattern.len()) && i < s.len() && c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        } else if i == s.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more byte.
        match star {
            Some((sp, si)) if si < s.len() => {
                star = Some((sp, si + 1));
                p = sp + 1;
                i = si + 1;
            }
            _ => return false,
        }
    }
}

/// Match `c` against the class starting at `pattern[p] == '['`; returns
/// whether it matched and the index after the class.
fn class_match(pattern: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = p + 1;
    let negate = pattern.get(j) == Some(&b'^');
    if negate {
        j += 1;
    }
    let mut matched = false;
    loop {
        let pc = *pattern.get(j)?;
        match pc {
            b']' => break,
            b'\\' if j + 1 < pattern.len() => {
                j += 1;
                matched |= pattern[j] == c;
            }
            _ if j + 2 < pattern.len() && pattern[j + 1] == b'-' && pattern[j + 2] != b']' => {
                let (mut lo, mut hi) = (pc, pattern[j + 2]);
                if lo > hi {
                    std::mem::swap(&mut lo, &mut hi);
                }
                matched |= (lo..=hi).contains(&c);
                j += 2;
            }
            _ => matched |= pc == c,
        }
        j += 1;
    }
    Some((matched != negate, j + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_exact_patterns_avoid_the_glob_matcher() {
        assert_eq!(Pattern::new("sess:*"), Pattern::Prefix(b"sess:".to_vec()));
        assert_eq!(Pattern::new("config"), Pattern::Exact(b"config".to_vec()));
        assert!(matches!(Pattern::new("PHPREDIS_SESSION:*[^K]"), Pattern::Glob(_)));
        assert!(Pattern::new("sess:*").matches(b"sess:abc"));
        assert!(!Pattern::new("sess:*").matches(b"session:abc"));
    }

    #[test]
    fn glob_semantics_follow_redis() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("h\\*llo", "h\\llo", false),
            (":1:django.contrib.sessions.*", ":1:django.contrib.sessions.cache0abc", true),
            ("spring:session:sessions:*", "spring:session:sessions:expires:1", true),
            ("*_LOCK", "PHPREDIS_SESSION:x_LOCK", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), *want, "{p} ~ {s}");
            assert_eq!(Pattern::new(p).matches(s.as_bytes()), *want, "{p} ~ {s} (compiled)");
        }
    }

    #[test]
    fn first_matching_rule_wins_and_legacy_is_time_boxed() {
        let rules = Rules::new(vec![Rule::new("sess:*"), Rule::new("*")]);
        assert_eq!(rules.find(b"sess:1"), Some(0));
        assert_eq!(rules.find(b"other"), Some(1));
        let mut r = Rule::new("x");
        r.legacy = LegacyPolicy::Pass;
        r.legacy_until = Some(100);
        assert_eq!(r.legacy_at(99), LegacyPolicy::Pass);
        assert_eq!(r.legacy_at(100), LegacyPolicy::Reject);
    }

    #[test]
    fn namespaces_are_the_literal_prefixes_of_pseudonymising_rules_longest_first() {
        let names = |p: &str, seal: bool| Rule { seal, pseudonymise: true, ..Rule::new(p) };
        let rules = Rules::new(vec![
            names("PHP:*_LOCK", false),
            names("PHP:*", true),
            names("a:b:*", true),
            names("a:*", true),
        ]);
        assert_eq!(rules.all_namespaces().collect::<Vec<_>>(), [&b"PHP:"[..], b"a:b:", b"a:"]);
        assert_eq!(rules.namespace(b"PHP:x_LOCK"), Some(&b"PHP:"[..]));
        assert_eq!(rules.namespace(b"a:b:c"), Some(&b"a:b:"[..]));
        assert_eq!(rules.namespace(b"a:c"), Some(&b"a:"[..]));
        assert_eq!(rules.namespace(b"b:c"), None);
        assert_eq!(rules.names_rule(b"PHP:1"), Some(0));
        assert_eq!(rules.names_in_script(b"return redis.call('get', 'a:b:1')"), Some(2));
        // A prefix shorter than 3 bytes is taken to be named by every script.
        assert_eq!(rules.names_in_script(b"return 1"), Some(3));
        assert_eq!(Rules::new(vec![names("PHP:*", true)]).names_in_script(b"return 1"), None);
        // Namespaces added or removed by a reload.
        let fewer = Rules::new(vec![names("PHP:*", true), Rule::new("a:*")]);
        assert_eq!(
            rules.dropped_by(&fewer),
            [
                "key rule \"a:b:*\" no longer seals",
                "names under \"a:b:\" no longer pseudonymised",
                "names under \"a:\" no longer pseudonymised"
            ]
        );
        assert_eq!(fewer.dropped_by(&rules).iter().filter(|d| d.contains("newly")).count(), 2);
    }

    #[test]
    fn what_a_reload_stops_sealing() {
        let rule = |p: &str, seal: bool| Rule { seal, ..Rule::new(p) };
        let old = Rules::new(vec![rule("sess:*", true), rule("user:*", true)]);
        assert!(
            old.dropped_by(&Rules::new(vec![rule("sess:*", true), rule("user:*", true), rule("x:*", true)])).is_empty()
        );
        let policy =
            Rules::new(vec![Rule { on_failure: FailurePolicy::Error, ..rule("sess:*", true) }, rule("user:*", true)]);
        assert!(old.dropped_by(&policy).is_empty());
        assert_eq!(old.dropped_by(&Rules::new(vec![rule("sess:*", true)])), ["key rule \"user:*\" no longer seals"]);
        assert_eq!(
            old.dropped_by(&Rules::new(vec![rule("sess:*", true), rule("user:a*", true)])),
            ["key rule \"user:*\" no longer seals"]
        );
        let exempt = Rules::new(vec![rule("sess:lock*", false), rule("sess:*", true), rule("user:*", true)]);
        assert_eq!(old.dropped_by(&exempt), ["new key exemption \"sess:lock*\" (seal = false)"]);
        assert!(exempt.dropped_by(&exempt).is_empty());
        let hash = Rules::new(vec![Rule { fields: Some(Pattern::new("data")), ..rule("sess:*", true) }]);
        assert_eq!(
            hash.dropped_by(&Rules::new(vec![rule("sess:*", true)])),
            ["key rule \"sess:*\" (fields \"data\") no longer seals"]
        );
        assert_eq!(old.dropped_by(&Rules::default()).len(), 2);
    }
}

#[cfg(test)]
mod prefix_tests {
    use super::could_match_with_prefix as could;

    #[test]
    fn a_prefix_could_match_a_glob() {
        assert!(could(b"sess:*", b"sess:"));
        assert!(could(b"sess:*", b"se"));
        assert!(could(b"sess:*", b"sess:abc:"));
        assert!(!could(b"sess:*", b"key:"));
        assert!(!could(b"sess:*", b"sessx:"));
        assert!(could(b"*:data", b"anything:"));
        assert!(could(b"s?ss:*", b"sXss:"));
        assert!(could(b"[st]ess:*", b"tess:"));
        assert!(!could(b"exact", b"exactly:"));
        assert!(could(b"a\\*b*", b"a*b:"));
        assert!(!could(b"a\\*b*", b"axb:"));
    }
}
