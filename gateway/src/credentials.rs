//! Who may call what: bearer credentials read as RFC 7235 / RFC 6750 read them, and the
//! roles of the configured API tokens. The management API and the rooms API's matchmaker
//! calls (allocate, address) check the same list; rooms' own tokens are `maestro_core`'s.

use std::sync::Arc;

/// The token of an `Authorization` value with the `Bearer` scheme: the scheme in any case
/// (RFC 7235 §2.1), then one or more spaces, then a b64token (RFC 6750 §2.1) and nothing
/// else. `None` for any other scheme or shape.
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    is_b64token(token).then_some(token)
}

/// RFC 6750's b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|c| B64TOKEN[usize::from(c)])
}

/// Which bytes a b64token's body may hold: a table, since every ping's token is checked.
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        c += 1;
    }
    table
};

/// What a token may do. `Read` < `Write` < `Admin` on the management API; `Matchmaker` only
/// allocates rooms and reads their addresses (as `Admin` may too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Matchmaker,
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matchmaker => "matchmaker",
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "matchmaker" => Self::Matchmaker,
            "read" => Self::Read,
            "write" => Self::Write,
            "admin" => Self::Admin,
            _ => return None,
        })
    }

    /// Whether a token of this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        match needed {
            Role::Matchmaker => matches!(self, Role::Matchmaker | Role::Admin),
            management => self != Role::Matchmaker && self >= management,
        }
    }
}

/// The configured tokens with their roles.
#[derive(Debug, Clone)]
pub struct Credentials(Arc<Vec<(Role, String)>>);

impl Credentials {
    /// Tokens from a comma- or newline-separated list of `[role:]token` (`read`, `write`,
    /// `admin`, `matchmaker`; a bare token is `admin`, as every token was before roles).
    /// `Ok(None)` when the list holds no token.
    pub fn from_list(list: &str) -> Result<Option<Self>, String> {
        let mut tokens = Vec::new();
        for entry in list
            .split([',', '\n'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let (role, token) = match entry.split_once(':') {
                Some((role, token)) => (
                    Role::parse(role).ok_or_else(|| {
                        format!(
                            "unknown token role {role:?}: one of read, write, admin, matchmaker"
                        )
                    })?,
                    token,
                ),
                None => (Role::Admin, entry),
            };
            if !is_b64token(token) {
                return Err(format!(
                    "a {} token must be letters, digits and -._~+/ (RFC 6750)",
                    role.as_str()
                ));
            }
            tokens.push((role, token.to_string()));
        }
        Ok((!tokens.is_empty()).then(|| Self(Arc::new(tokens))))
    }

    /// The role of `presented`, comparing every token in full so the time taken says
    /// nothing about a near miss.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        self.0.iter().fold(None, |found, (role, token)| {
            if constant_time_eq(token, presented) {
                Some(*role)
            } else {
                found
            }
        })
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials_follow_rfc_7235_and_6750() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        // 1*SP between scheme and credentials.
        assert_eq!(bearer_token("Bearer   abc"), Some("abc"));
        assert_eq!(
            bearer_token("Bearer a-b.c_d~e+f/g=="),
            Some("a-b.c_d~e+f/g==")
        );
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer    ",
            "Basic abc",
            "Bearerabc",
            "Bearer a b",
            "Bearer ===",
            "Bearer a,b",
            "Token abc",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn token_lists_carry_roles_and_bare_tokens_are_admin() {
        assert!(Credentials::from_list(" , \n").unwrap().is_none());
        let creds = Credentials::from_list("alpha, read:beta\nmatchmaker:gamma,write:delta")
            .unwrap()
            .unwrap();
        assert_eq!(creds.role_of("alpha"), Some(Role::Admin));
        assert_eq!(creds.role_of("beta"), Some(Role::Read));
        assert_eq!(creds.role_of("gamma"), Some(Role::Matchmaker));
        assert_eq!(creds.role_of("delta"), Some(Role::Write));
        assert_eq!(creds.role_of("bet"), None);
        assert_eq!(creds.role_of(""), None);
        assert!(
            Credentials::from_list("owner:x")
                .unwrap_err()
                .contains("unknown token role")
        );
        assert!(Credentials::from_list("read:a b").is_err());
    }

    #[test]
    fn roles_allow_what_they_name() {
        use Role::*;
        assert!(Admin.allows(Read) && Admin.allows(Write) && Admin.allows(Admin));
        assert!(Admin.allows(Matchmaker));
        assert!(Write.allows(Read) && Write.allows(Write) && !Write.allows(Admin));
        assert!(Read.allows(Read) && !Read.allows(Write));
        assert!(Matchmaker.allows(Matchmaker) && !Matchmaker.allows(Read));
        assert!(!Read.allows(Matchmaker) && !Write.allows(Matchmaker));
    }
}
