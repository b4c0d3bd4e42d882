//! Users that can sign in: configured ones, and on demand any user a `login_hint` names.

use std::sync::Arc;

use uuid::Uuid;

use crate::config::IdpConfig;

/// A signed-in user as tokens describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub username: String,
    /// Object id: `oid`, and `sub`, in tokens.
    pub oid: String,
    pub name: String,
    pub email: String,
}

/// Fixed namespace so a username always maps to the same `oid`, across runs and processes.
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x6d6f_636b_2d69_6470_2d75_7365_7273_0001);

/// Looks users up by `login_hint`.
pub struct Directory {
    configured: Vec<Arc<User>>,
    auto_provision: bool,
}

impl Directory {
    pub fn new(config: &IdpConfig) -> Self {
        let configured = config
            .users
            .iter()
            .map(|u| {
                let base = make_user(&u.username);
                Arc::new(User {
                    oid: u.oid.clone().unwrap_or(base.oid),
                    name: u.name.clone().unwrap_or(base.name),
                    email: u.email.clone().unwrap_or(base.email),
                    username: u.username.clone(),
                })
            })
            .collect();
        Self {
            configured,
            auto_provision: config.auto_provision_users,
        }
    }

    /// The user a hint names (case-insensitively), created on demand when allowed.
    pub fn find(&self, login_hint: &str) -> Option<Arc<User>> {
        let hint = login_hint.trim();
        if hint.is_empty() {
            return None;
        }
        if let Some(user) = self
            .configured
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(hint))
        {
            return Some(user.clone());
        }
        self.auto_provision
            .then(|| Arc::new(make_user(&hint.to_ascii_lowercase())))
    }

    /// The user signed in when no hint is given.
    pub fn default_user(&self) -> Option<Arc<User>> {
        self.configured.first().cloned()
    }
}

/// The `oid` (and `sub`) of a user without a configured one: the same for
/// the same name in every run, so a harness can tell whose a token is without
/// asking. Login hints are lowercased before they become user names.
pub fn oid_of(username: &str) -> String {
    Uuid::new_v5(&USER_NAMESPACE, username.as_bytes()).to_string()
}

fn make_user(username: &str) -> User {
    let local = username.split('@').next().unwrap_or(username);
    User {
        username: username.to_owned(),
        oid: oid_of(username),
        name: local.to_owned(),
        email: if username.contains('@') {
            username.to_owned()
        } else {
            format!("{username}@mock-idp.test")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_find_configured_users_and_create_others_with_stable_ids() {
        let directory = Directory::new(&IdpConfig::default());
        let alice = directory.find("ALICE").expect("configured user");
        assert_eq!(alice.username, "alice");
        let u1 = directory.find("user-0001").expect("auto-provisioned");
        assert_eq!(
            u1.oid,
            Directory::new(&IdpConfig::default())
                .find("user-0001")
                .expect("again")
                .oid
        );
        assert_ne!(u1.oid, alice.oid);
        assert!(directory.find("  ").is_none());
    }

    #[test]
    fn without_auto_provisioning_unknown_hints_find_nobody() {
        let config = IdpConfig {
            auto_provision_users: false,
            ..IdpConfig::default()
        };
        assert!(Directory::new(&config).find("mallory").is_none());
    }
}
