//! The broker as a Unix process: the `pid_file`, and dropping root privileges to the `user` option's
//! account once the listeners are bound and the log and pid files are open.
//!
//! Who calls it: `main`, on its own thread, in this order: [`plan_user`] (before binding, so that an
//! unknown user stops the broker before it serves anyone), `crate::server::start`, [`PidFile::create`],
//! [`drop_privileges`], [`check_access_after_drop`], [`PidFile::write_pid`]; [`PidFile::remove`] at a
//! clean exit.
//!
//! Mosquitto 2.0 (`drop_privileges` in `src/mosquitto.c`) switches user right after reading its config,
//! before it opens anything, so with it every file and port must already be usable by that user.
//! shardmq binds, opens the log files and writes the pid file first (as Mosquitto 1.x did), so that a
//! port under 1024 or a root-owned `/run` also work; it then hands the files it created (log files,
//! pid file) to that user, and warns at start-up about the files a SIGHUP or the exit will need but
//! that user cannot use. The user chosen, its fallback and the messages are Mosquitto's: unset means
//! `mosquitto`, and `nobody` when no `mosquitto` account exists; `root` stays root with a warning;
//! started by another user, nothing changes.
//!
//! Concurrency: [`drop_privileges`] runs when the shard, ticker and log threads already exist. glibc's
//! (and musl's) `setgroups`/`setgid`/`setuid` change the credentials of every thread of the process,
//! as POSIX requires, so no thread keeps root.

use std::ffi::{CStr, CString};
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

use crate::logging::log_type;

/// The user Mosquitto switches to when the `user` option is not given.
pub const DEFAULT_USER: &str = "mosquitto";

/// The fallback when [`DEFAULT_USER`] does not exist.
pub const FALLBACK_USER: &str = "nobody";

/// Why the broker cannot become its process (messages as Mosquitto words them, where it has them).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("Error: Unable to drop privileges to '{0}' because this user does not exist.")]
    NoSuchUser(String),
    #[error("Error: Unable to drop privileges to '{FALLBACK_USER}'.")]
    NoFallbackUser,
    #[error("Error: cannot look up user '{user}': {source}.")]
    Lookup { user: String, source: io::Error },
    #[error("Error setting groups whilst dropping privileges: {0}.")]
    Groups(#[source] io::Error),
    #[error("Error setting gid whilst dropping privileges: {0}.")]
    Gid(#[source] io::Error),
    #[error("Error setting uid whilst dropping privileges: {0}.")]
    Uid(#[source] io::Error),
    #[error("Error: Unable to write pid file {}: {source}.", path.display())]
    PidFile { path: PathBuf, source: io::Error },
}

/// An account to run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// What [`drop_privileges`] will do, decided by [`plan_user`] before the broker binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserPlan {
    /// Not started as root: keep running as the account that started the broker.
    NotRoot {
        /// The `user` option, when given and not the current account (it cannot be applied).
        ignored: Option<String>,
        /// Who the broker runs as.
        current: Account,
    },
    /// `user root`: stay root (Mosquitto allows it, with a warning).
    StayRoot,
    /// Started as root: switch to this account.
    Switch(Account),
}

/// Decide which account the broker runs as: the `user` option (`None`: [`DEFAULT_USER`], or
/// [`FALLBACK_USER`] with a warning when it does not exist, as in Mosquitto). An unknown user named
/// explicitly is an error.
pub fn plan_user(configured: Option<&str>) -> Result<UserPlan, ProcessError> {
    // SAFETY: geteuid/getuid/getgid cannot fail.
    let (euid, uid, gid) = unsafe { (libc::geteuid(), libc::getuid(), libc::getgid()) };
    plan_user_with(configured, euid, lookup_user, || {
        lookup_uid(uid).unwrap_or_else(|| Account {
            name: uid.to_string(),
            uid,
            gid,
        })
    })
}

/// [`plan_user`] with the effective uid and the account database given (for tests).
fn plan_user_with(
    configured: Option<&str>,
    euid: libc::uid_t,
    lookup: impl Fn(&str) -> Result<Option<Account>, ProcessError>,
    current: impl FnOnce() -> Account,
) -> Result<UserPlan, ProcessError> {
    if euid != 0 {
        let current = current();
        let ignored = configured.filter(|&u| u != current.name).map(str::to_owned);
        return Ok(UserPlan::NotRoot { ignored, current });
    }
    let name = configured.unwrap_or(DEFAULT_USER);
    if name == "root" {
        return Ok(UserPlan::StayRoot);
    }
    if let Some(account) = lookup(name)? {
        return Ok(UserPlan::Switch(account));
    }
    if name != DEFAULT_USER {
        return Err(ProcessError::NoSuchUser(name.to_owned()));
    }
    tracing::warn!(target: log_type::WARNING,
        "Warning: Unable to drop privileges to '{DEFAULT_USER}' because this user does not exist. \
         Trying '{FALLBACK_USER}' instead.");
    match lookup(FALLBACK_USER)? {
        Some(account) => Ok(UserPlan::Switch(account)),
        None => Err(ProcessError::NoFallbackUser),
    }
}

/// The passwd entry named `name`, if any.
pub fn lookup_user(name: &str) -> Result<Option<Account>, ProcessError> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: getpwnam_r writes into `pwd` and `buf` (of the length given) and sets `result` to
        // null or to `&pwd`; nothing is read from them unless it returned 0 with a non-null result.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => {
                return Ok(Some(Account {
                    name: name.to_owned(),
                    uid: pwd.pw_uid,
                    gid: pwd.pw_gid,
                }))
            }
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            // "Not found" is reported as one of these by some NSS modules.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => {
                return Err(ProcessError::Lookup {
                    user: name.to_owned(),
                    source: io::Error::from_raw_os_error(e),
                })
            }
        }
    }
}

/// The passwd entry of `uid`, if any.
fn lookup_uid(uid: libc::uid_t) -> Option<Account> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: as in `lookup_user`; `pw_name` points into `buf` and is copied before `buf` goes.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some(Account {
            name: CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

/// Apply `plan`: when it says [`UserPlan::Switch`], give `hand_over` (the files the broker created as
/// root: new log files, the pid file) to that account, then take its groups, gid and uid. Logs what it
/// did, and Mosquitto's warning when the broker still runs as root. Returns the account switched to.
pub fn drop_privileges(
    plan: &UserPlan,
    hand_over: &[&Path],
) -> Result<Option<Account>, ProcessError> {
    let account = match plan {
        UserPlan::NotRoot {
            ignored: Some(user),
            current,
        } => {
            tracing::info!(target: log_type::NOTICE,
                "Not started as root: user '{user}' not applied, running as user '{}' (uid {}).",
                current.name, current.uid);
            return Ok(None);
        }
        UserPlan::NotRoot { ignored: None, .. } => return Ok(None),
        UserPlan::StayRoot => {
            warn_if_root();
            return Ok(None);
        }
        UserPlan::Switch(account) => account,
    };
    for path in hand_over {
        if let Err(e) = std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)) {
            tracing::warn!(target: log_type::WARNING,
                "Warning: cannot give {} to user '{}': {e}.", path.display(), account.name);
        }
    }
    let name = CString::new(account.name.as_str()).map_err(|_| {
        ProcessError::Groups(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NUL in user name",
        ))
    })?;
    // SAFETY: plain system calls with a valid C string and ids; glibc applies each to every thread.
    unsafe {
        if libc::initgroups(name.as_ptr(), account.gid) == -1 {
            return Err(ProcessError::Groups(io::Error::last_os_error()));
        }
        if libc::setgid(account.gid) == -1 {
            return Err(ProcessError::Gid(io::Error::last_os_error()));
        }
        if libc::setuid(account.uid) == -1 {
            return Err(ProcessError::Uid(io::Error::last_os_error()));
        }
    }
    tracing::info!(target: log_type::NOTICE,
        "Dropped privileges to user '{}' (uid {}, gid {}).", account.name, account.uid, account.gid);
    warn_if_root();
    Ok(Some(account.clone()))
}

fn warn_if_root() {
    // SAFETY: geteuid/getegid cannot fail.
    if unsafe { libc::geteuid() == 0 || libc::getegid() == 0 } {
        tracing::warn!(target: log_type::WARNING,
            "Warning: shardmq should not be run as root/administrator.");
    }
}

/// The files the broker needs after it dropped privileges, for [`check_access_after_drop`].
#[derive(Debug, Default)]
pub struct LaterAccess<'a> {
    /// Read again on SIGHUP: `password_file`, `acl_file` (with their option names).
    pub reread: Vec<(&'static str, &'a Path)>,
    /// Reopened on SIGHUP, and created again after log rotation: `log_dest file`.
    pub log_files: Vec<&'a Path>,
    /// Removed at exit.
    pub pid_file: Option<&'a Path>,
}

/// Run as `account` (after [`drop_privileges`]): warn about each file a SIGHUP or the exit will need
/// that this account cannot use. Returns the warnings logged, for tests.
pub fn check_access_after_drop(account: &Account, files: &LaterAccess<'_>) -> Vec<String> {
    let user = &account.name;
    let mut warnings = Vec::new();
    for (option, path) in &files.reread {
        if let Err(e) = std::fs::File::open(path) {
            warnings.push(format!(
                "Warning: user '{user}' cannot read {option} {} ({e}): SIGHUP will not reload it.",
                path.display()
            ));
        }
    }
    for path in &files.log_files {
        let writable = OpenOptions::new().append(true).open(path).err();
        let dir = parent_dir(path);
        match (writable, may_create_in(dir)) {
            (None, true) => {}
            (Some(e), _) => warnings.push(format!(
                "Warning: user '{user}' cannot write log file {} ({e}): SIGHUP will not reopen it.",
                path.display()
            )),
            (None, false) => warnings.push(format!(
                "Warning: user '{user}' cannot create files in {}: after log rotation, SIGHUP will \
                 not reopen log file {}.",
                dir.display(),
                path.display()
            )),
        }
    }
    if let Some(path) = files.pid_file {
        let dir = parent_dir(path);
        if !may_create_in(dir) {
            warnings.push(format!(
                "Warning: user '{user}' cannot write to {}: pid file {} will be emptied, not \
                 removed, at exit.",
                dir.display(),
                path.display()
            ));
        }
    }
    for w in &warnings {
        tracing::warn!(target: log_type::WARNING, "{w}");
    }
    warnings
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether this process may create and remove files in `dir` (access(2): real ids, which
/// [`drop_privileges`] set).
fn may_create_in(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid C string.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The `pid_file`: created (empty) before the privileges are dropped, so that a root-owned directory
/// works; the process id is written through the open file once the broker is fully up, so a pid file
/// with a pid in it means the broker serves as the user it will run as. Removed at a clean exit.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    created: bool,
    file: Option<std::fs::File>,
}

impl PidFile {
    /// Create (or truncate) `path`, as the user that started the broker.
    pub fn create(path: &Path) -> Result<PidFile, ProcessError> {
        let created = !path.exists();
        let file = std::fs::File::create(path).map_err(|source| ProcessError::PidFile {
            path: path.to_owned(),
            source,
        })?;
        Ok(PidFile {
            path: path.to_owned(),
            created,
            file: Some(file),
        })
    }

    /// Write this process's id (after `-d` forked, so the daemon's) and a newline, in one write, and
    /// close the file.
    pub fn write_pid(&mut self) -> Result<(), ProcessError> {
        use std::io::Write;
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(|source| ProcessError::PidFile {
                path: self.path.clone(),
                source,
            })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether [`PidFile::create`] created the file (rather than overwrote one), so that it may be
    /// handed to the user the broker switches to.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Remove the file. When its directory does not let this user remove it, empty it so that no stale
    /// process id remains, and say so.
    pub fn remove(self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                let emptied = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&self.path)
                    .is_ok();
                tracing::warn!(target: log_type::WARNING,
                    "Warning: cannot remove pid file {} ({e}){}.", self.path.display(),
                    if emptied { "; emptied it instead" } else { "" });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, uid: u32) -> Account {
        Account {
            name: name.to_owned(),
            uid,
            gid: uid,
        }
    }

    fn db(
        names: &'static [&'static str],
    ) -> impl Fn(&str) -> Result<Option<Account>, ProcessError> {
        move |n| {
            Ok(names
                .iter()
                .position(|&x| x == n)
                .map(|i| account(n, 100 + i as u32)))
        }
    }

    #[test]
    fn as_root_the_default_is_mosquitto_then_nobody() {
        let me = || account("root", 0);
        assert_eq!(
            plan_user_with(None, 0, db(&["mosquitto", "nobody"]), me).unwrap(),
            UserPlan::Switch(account("mosquitto", 100))
        );
        assert_eq!(
            plan_user_with(None, 0, db(&["nobody"]), me).unwrap(),
            UserPlan::Switch(account("nobody", 100))
        );
        assert_eq!(
            plan_user_with(Some("mosquitto"), 0, db(&["nobody"]), me).unwrap(),
            UserPlan::Switch(account("nobody", 100))
        );
        assert!(matches!(
            plan_user_with(None, 0, db(&[]), me),
            Err(ProcessError::NoFallbackUser)
        ));
    }

    #[test]
    fn as_root_a_named_user_must_exist_and_root_stays() {
        let me = || account("root", 0);
        assert_eq!(
            plan_user_with(Some("broker"), 0, db(&["nobody", "broker"]), me).unwrap(),
            UserPlan::Switch(account("broker", 101))
        );
        let e = plan_user_with(Some("ghost"), 0, db(&["nobody"]), me).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error: Unable to drop privileges to 'ghost' because this user does not exist."
        );
        assert_eq!(
            plan_user_with(Some("root"), 0, db(&[]), me).unwrap(),
            UserPlan::StayRoot
        );
    }

    #[test]
    fn not_root_nothing_changes() {
        let me = || account("alice", 1000);
        assert_eq!(
            plan_user_with(None, 1000, db(&[]), me).unwrap(),
            UserPlan::NotRoot {
                ignored: None,
                current: account("alice", 1000)
            }
        );
        assert_eq!(
            plan_user_with(Some("alice"), 1000, db(&[]), me).unwrap(),
            UserPlan::NotRoot {
                ignored: None,
                current: account("alice", 1000)
            }
        );
        assert_eq!(
            plan_user_with(Some("mosquitto"), 1000, db(&[]), me).unwrap(),
            UserPlan::NotRoot {
                ignored: Some("mosquitto".into()),
                current: account("alice", 1000)
            }
        );
    }

    #[test]
    fn lookup_finds_root_and_not_a_made_up_name() {
        assert_eq!(lookup_user("root").unwrap().map(|a| a.uid), Some(0));
        assert_eq!(lookup_user("no-such-user-shardmq-x").unwrap(), None);
        assert_eq!(lookup_uid(0).map(|a| a.name), Some("root".to_owned()));
    }

    #[test]
    fn pid_file_is_written_and_removed() {
        let dir = std::env::temp_dir().join(format!("shardmq-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pid");
        let mut pid = PidFile::create(&path).unwrap();
        assert!(pid.created());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        pid.write_pid().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        pid.remove();
        assert!(!path.exists());
        let e = PidFile::create(&dir.join("missing/x.pid")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Error: Unable to write pid file "),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn access_checks_name_what_will_fail() {
        let dir = std::env::temp_dir().join(format!("shardmq-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        std::fs::write(&log, "").unwrap();
        let missing = dir.join("missing/passwd");
        let me = account("me", 0);
        let files = LaterAccess {
            reread: vec![("password_file", missing.as_path())],
            log_files: vec![log.as_path()],
            pid_file: Some(Path::new("/nonexistent-dir/x.pid")),
        };
        let w = check_access_after_drop(&me, &files);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("cannot read password_file") && w[0].contains("SIGHUP"));
        assert!(w[1].contains("pid file /nonexistent-dir/x.pid will be emptied"));
    }
}
