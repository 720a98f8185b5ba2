//! Who may do what (SPEC §5): roles, the principal a token or key stands for,
//! and the one permission check every route and frame type goes through.
//! Pure: verifying tokens and hashing keys happen in the server.
//!
//! | role | publish | subscribe / read history | status reports | cancel, replay, stream control | types, templates, rules, keys, tenants, audit |
//! |---|---|---|---|---|---|
//! | `admin` | any stream | any stream | yes | yes | yes |
//! | `producer` | its publish globs | its subscribe globs | no | no | no |
//! | `consumer` | no | its subscribe globs | no | no | no |
//! | `overlay` | no | its subscribe globs | yes | no | no |

use serde::{Deserialize, Serialize};

use crate::filter::Glob;

/// A role (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything within its tenant (the system tenant's admins: every tenant).
    Admin,
    /// Publishes to allowed streams; reads allowed streams.
    Producer,
    /// Subscribes to allowed streams.
    Consumer,
    /// A consumer that also reports animation status.
    Overlay,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Self::Admin, Self::Producer, Self::Consumer, Self::Overlay];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Producer => "producer",
            Self::Consumer => "consumer",
            Self::Overlay => "overlay",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Append to a stream.
    Publish(&'a str),
    /// Receive or read a stream's events (live or history).
    Read(&'a str),
    /// Report `ANIMATION_STARTED/ENDED/CANCELLED` for an overlay.
    ReportStatus,
    /// Cancel, replay, skip; pause, resume, start, stop streams.
    Control,
    /// Change event types, templates, rules, webhooks, keys, tenants; read
    /// the audit log.
    Administer,
}

/// The identity behind a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// Who (the token's `sub`, or the key's name).
    pub subject: String,
    /// The tenant every query of this principal is scoped to.
    pub tenant: String,
    /// The role.
    pub role: Role,
    /// Streams it may publish to (globs); empty means none, unless admin.
    pub publish: Vec<Glob>,
    /// Streams it may read (globs); empty means none, unless admin.
    pub subscribe: Vec<Glob>,
}

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{role} `{subject}` may not {what}")]
pub struct Denied {
    /// The role that asked.
    pub role: &'static str,
    /// Who asked.
    pub subject: String,
    /// What was refused, in words.
    pub what: String,
}

impl Principal {
    /// The open principal used when no authentication is configured (local
    /// development on loopback): an admin of `tenant` with every stream.
    pub fn open(tenant: &str) -> Self {
        Self {
            subject: "anonymous".into(),
            tenant: tenant.into(),
            role: Role::Admin,
            publish: vec![Glob::new("*")],
            subscribe: vec![Glob::new("*")],
        }
    }

    /// Checks one action.
    ///
    /// # Errors
    /// [`Denied`] naming the role, the subject and the action.
    pub fn check(&self, action: Action<'_>) -> Result<(), Denied> {
        let allowed = match (self.role, action) {
            (Role::Admin, _) => true,
            (Role::Producer, Action::Publish(s)) => any_match(&self.publish, s),
            (_, Action::Read(s)) => any_match(&self.subscribe, s),
            (Role::Overlay, Action::ReportStatus) => true,
            _ => false,
        };
        if allowed {
            return Ok(());
        }
        let what = match action {
            Action::Publish(s) => format!("publish to stream `{s}`"),
            Action::Read(s) => format!("read stream `{s}`"),
            Action::ReportStatus => "report animation status".into(),
            Action::Control => "cancel, replay or control streams".into(),
            Action::Administer => "change types, templates, rules, keys or tenants".into(),
        };
        Err(Denied {
            role: self.role.as_str(),
            subject: self.subject.clone(),
            what,
        })
    }

    /// May this principal read a subscription over these stream patterns?
    /// Each pattern must lie within the principal's globs: a literal stream
    /// must match one, and a glob must equal one or be `*`-free under it.
    ///
    /// # Errors
    /// [`Denied`] for the first pattern outside its reach.
    pub fn check_read_patterns(&self, patterns: &[Glob]) -> Result<(), Denied> {
        if self.role == Role::Admin {
            return Ok(());
        }
        if patterns.is_empty() {
            // "Every stream": only as wide as the principal's own globs allow.
            return if self.subscribe.iter().any(|g| g.as_str() == "*") {
                Ok(())
            } else {
                Err(self.denied_read("every stream"))
            };
        }
        for p in patterns {
            let covered = if p.is_literal() {
                any_match(&self.subscribe, p.as_str())
            } else {
                self.subscribe
                    .iter()
                    .any(|g| g.as_str() == "*" || g.as_str() == p.as_str())
            };
            if !covered {
                return Err(self.denied_read(p.as_str()));
            }
        }
        Ok(())
    }

    fn denied_read(&self, what: &str) -> Denied {
        Denied {
            role: self.role.as_str(),
            subject: self.subject.clone(),
            what: format!("read stream `{what}`"),
        }
    }
}

fn any_match(globs: &[Glob], stream: &str) -> bool {
    globs.iter().any(|g| g.matches(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role, publish: &[&str], subscribe: &[&str]) -> Principal {
        Principal {
            subject: "t".into(),
            tenant: "acme".into(),
            role,
            publish: publish.iter().map(|g| Glob::new(*g)).collect(),
            subscribe: subscribe.iter().map(|g| Glob::new(*g)).collect(),
        }
    }

    #[test]
    fn permission_matrix() {
        let admin = who(Role::Admin, &[], &[]);
        let producer = who(Role::Producer, &["match-*"], &["match-*"]);
        let consumer = who(Role::Consumer, &["match-*"], &["match-*"]);
        let overlay = who(Role::Overlay, &["match-*"], &["match-*"]);
        let cases: [(&Principal, Action<'_>, bool); 20] = [
            (&admin, Action::Publish("x"), true),
            (&admin, Action::Read("x"), true),
            (&admin, Action::ReportStatus, true),
            (&admin, Action::Control, true),
            (&admin, Action::Administer, true),
            (&producer, Action::Publish("match-1"), true),
            (&producer, Action::Publish("other"), false),
            (&producer, Action::Read("match-1"), true),
            (&producer, Action::ReportStatus, false),
            (&producer, Action::Control, false),
            (&producer, Action::Administer, false),
            (&consumer, Action::Publish("match-1"), false),
            (&consumer, Action::Read("match-1"), true),
            (&consumer, Action::Read("other"), false),
            (&consumer, Action::Control, false),
            (&overlay, Action::Publish("match-1"), false),
            (&overlay, Action::Read("match-2"), true),
            (&overlay, Action::ReportStatus, true),
            (&overlay, Action::Control, false),
            (&overlay, Action::Administer, false),
        ];
        for (p, action, want) in cases {
            assert_eq!(p.check(action).is_ok(), want, "{:?} {action:?}", p.role);
        }
        let e = consumer.check(Action::Publish("match-1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "consumer `t` may not publish to stream `match-1`"
        );
    }

    #[test]
    fn subscription_patterns_stay_within_the_globs() {
        let p = who(Role::Consumer, &[], &["match-*"]);
        let ok = |pats: &[&str]| {
            p.check_read_patterns(&pats.iter().map(|s| Glob::new(*s)).collect::<Vec<_>>())
                .is_ok()
        };
        assert!(ok(&["match-1", "match-2"]));
        assert!(ok(&["match-*"]));
        assert!(!ok(&["*"]), "a wider glob is refused");
        assert!(!ok(&["m*"]), "a glob that reaches outside is refused");
        assert!(!ok(&["other"]));
        assert!(!ok(&[]), "every stream is refused without `*`");
        let all = who(Role::Consumer, &[], &["*"]);
        assert!(all.check_read_patterns(&[]).is_ok());
    }
}
