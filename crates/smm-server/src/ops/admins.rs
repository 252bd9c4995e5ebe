//! Console users: created from the CLI (`smm-gateway admins create`) and by an owner in the
//! console, with argon2id password hashes; and the login check both the console and its tests
//! go through.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use smm_store::{AdminRole, AdminUser, Lockout, NewAdmin};
use utoipa::ToSchema;

use super::{OpError, OpResult, Ops};
use crate::app::now_ms;

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// And longer ones too: argon2 would take them, but nobody types them, and a huge one is a
/// cheap way to make the server work.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A console user as shown (never the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AdminView {
    pub id: i64,
    pub username: String,
    /// `owner`, `operator` or `viewer`.
    pub role: String,
    pub locked_until: Option<i64>,
    pub last_login_at: Option<i64>,
    pub created_at: i64,
}

impl From<&AdminUser> for AdminView {
    fn from(u: &AdminUser) -> Self {
        AdminView {
            id: u.id,
            username: u.username.clone(),
            role: u.role.as_str().to_owned(),
            locked_until: u.locked_until,
            last_login_at: u.last_login_at,
            created_at: u.created_at,
        }
    }
}

/// argon2id with the OWASP-recommended minimum (19 MiB, 2 passes, 1 lane): about 20 ms here.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> OpResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| OpError::Unavailable(format!("cannot hash the password: {e}")))
}

/// At most this many password checks run at once in the process (each takes 19 MiB and a core
/// for ~20 ms): a flood of logins queues here instead of starving the runtime.
static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// [`verify_password`] off the async runtime, a bounded number at a time.
async fn verify_bounded(password: &str, hash: &str) -> bool {
    let Ok(_permit) = CHECKS.acquire().await else {
        return false;
    };
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash no password matches, checked when the username is unknown so that a wrong
/// username takes as long as a wrong password.
static DECOY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    hash_password("decoy password, never a real one").unwrap_or_default()
});

/// Why a login was refused. The console says only "wrong username or password" for the first
/// two, so that it never tells which usernames exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    Wrong,
    /// Locked after repeated failures, until then (ms since the epoch).
    Locked(i64),
    Unavailable(String),
}

fn check_password(password: &str) -> OpResult<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(OpError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(OpError::Invalid(format!(
            "the password must have at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

impl Ops<'_> {
    /// Creates a console user. `role` is `owner`, `operator` or `viewer`.
    pub async fn create_admin(
        &self,
        username: &str,
        password: &str,
        role: &str,
    ) -> OpResult<AdminView> {
        let role = AdminRole::parse(role.trim()).ok_or_else(|| {
            OpError::Invalid(format!(
                "role must be owner, operator or viewer, not {role:?}"
            ))
        })?;
        check_password(password)?;
        let new = NewAdmin {
            username: username.trim().to_owned(),
            password_hash: hash_password(password)?,
            role,
        };
        let user = self.store.create_admin(new, self.actor, now_ms()).await?;
        Ok((&user).into())
    }

    pub async fn list_admins(&self) -> OpResult<Vec<AdminView>> {
        Ok(self
            .store
            .admins()
            .await?
            .iter()
            .map(AdminView::from)
            .collect())
    }

    /// Checks a login: the user when the password matches and the account is not locked.
    /// A failure is counted (and locks the account at the limit); a success is not recorded
    /// here: the caller opens the session with `Store::login_succeeded`.
    pub async fn check_login(
        &self,
        username: &str,
        password: &str,
        lockout: Lockout,
    ) -> Result<AdminUser, LoginRefusal> {
        let unavailable = |e: smm_store::StoreError| LoginRefusal::Unavailable(e.to_string());
        let now = now_ms();
        let username = username.trim();
        // Whatever the outcome, one password check is made, so that neither an unknown user,
        // a locked one nor an overlong password answers faster than a wrong password.
        let password = if password.chars().count() <= MAX_PASSWORD_CHARS {
            password
        } else {
            ""
        };
        let user = if username.is_empty() || username.len() > 64 {
            None
        } else {
            self.store
                .admin_by_username(username)
                .await
                .map_err(unavailable)?
        };
        let Some(user) = user else {
            verify_bounded(password, &DECOY).await;
            return Err(LoginRefusal::Wrong);
        };
        if let Some(until) = user.locked_until.filter(|_| user.locked_at(now)) {
            verify_bounded(password, &DECOY).await;
            return Err(LoginRefusal::Locked(until));
        }
        if !password.is_empty() && verify_bounded(password, &user.password_hash).await {
            return Ok(user);
        }
        let after = self
            .store
            .login_failed(user.id, lockout, now)
            .await
            .map_err(unavailable)?;
        match after.locked_until.filter(|_| after.locked_at(now)) {
            Some(until) => Err(LoginRefusal::Locked(until)),
            None => Err(LoginRefusal::Wrong),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("correct horse battery").expect("hash");
        let b = hash_password("correct horse battery").expect("hash");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterY", &a));
        assert!(!verify_password(
            "correct horse battery",
            "not a phc string"
        ));
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
        assert!(check_password("twelve chars").is_ok());
    }
}
