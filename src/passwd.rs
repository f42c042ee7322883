//! `shardmq passwd`: manages password files like Mosquitto 2.0's `mosquitto_passwd`, so that no
//! Mosquitto package is needed to create users.
//!
//! Command line, messages and exit codes follow `apps/mosquitto_passwd/mosquitto_passwd.c` (2.0):
//!
//! ```text
//! shardmq passwd [-H sha512 | -H sha512-pbkdf2 | -H argon2id] [-I iterations] [-c | -D] passwordfile username
//! shardmq passwd [-H sha512 | -H sha512-pbkdf2 | -H argon2id] [-I iterations] [-c] -b passwordfile username password
//! shardmq passwd [-H ...] [-I iterations] -U passwordfile
//! shardmq passwd -S [-I iterations] [-c | -D] [-b] scramfile username [password]
//! ```
//!
//! Options are read until the first argument that is not one, as Mosquitto does. Where shardmq
//! deliberately differs:
//! * The file is rewritten through a temporary file in its own directory and `rename`d over it (its
//!   mode, and its owner where allowed, are kept), so a crash never leaves a half-written file;
//!   Mosquitto rewrites it in place after copying it to a backup.
//! * Comment (`#`) and blank lines are kept as they are; Mosquitto calls them a corrupt file.
//! * `-U` leaves entries that already hold a `$6$` / `$7$` hash alone (Mosquitto would hash the hash,
//!   locking the user out), and uses `-I` (Mosquitto 2.0 ignores it there).
//! * `-H argon2id` (Mosquitto 2.1's `$argon2id$` entries) is accepted; Mosquitto 2.0 has no such hash.
//! * An empty username is refused; a last line without a newline gets one before a user is appended.
//! * `-S` (`--scram`) edits a `scram_file` instead: SCRAM-SHA-256 entries for MQTT 5.0 enhanced
//!   authentication (`crate::auth::scram`), `-I` rounds of PBKDF2 (default 4096, RFC 7677's minimum).
//!
//! Concurrency: a short-lived single-threaded command; nothing else runs in the process.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::auth::password::{
    hash_password_argon2id, hash_password_pbkdf2, hash_password_sha512, is_password_hash,
    HashPasswordError, DEFAULT_PBKDF2_ITERATIONS,
};

/// Mosquitto refuses usernames and passwords this long or longer (65536).
const MAX_LEN: usize = 65535;

/// The hash `-H` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashType {
    /// `-H sha512`: `$6$`, Mosquitto 1.6 and earlier.
    Sha512,
    /// `-H sha512-pbkdf2` (the default): `$7$`.
    Sha512Pbkdf2,
    /// `-H argon2id`: `$argon2id$` PHC strings, as Mosquitto 2.1 writes (Mosquitto 2.0 cannot read them).
    Argon2id,
    /// `-S`: a `scram_file` entry (shardmq only).
    Scram,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set (add or update) `username`'s password; `password` is `None` when it is to be prompted for.
    Set {
        file: PathBuf,
        username: String,
        password: Option<String>,
        create: bool,
    },
    /// `-D`: remove `username`.
    Delete { file: PathBuf, username: String },
    /// `-U`: hash every plain-text password in `file`.
    Convert { file: PathBuf },
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    pub hash: HashType,
    pub iterations: u32,
}

/// Why the command stops: the message for stderr (or the usage text for stdout) and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Print the usage text to stdout and exit with this code.
    Usage(u8),
    /// Print this line to stderr and exit with this code.
    Message(String, u8),
}

impl Failure {
    fn msg(text: impl Into<String>) -> Failure {
        Failure::Message(text.into(), 1)
    }
}

/// The usage text, Mosquitto's with this command's name.
pub fn usage() -> String {
    "shardmq passwd is a tool for managing password files for shardmq (and mosquitto).\n\n\
     Usage: shardmq passwd [-H sha512 | -H sha512-pbkdf2 | -H argon2id] [-I iterations] [-c | -D] passwordfile username\n       \
     shardmq passwd [-H sha512 | -H sha512-pbkdf2 | -H argon2id] [-I iterations] [-c] -b passwordfile username password\n       \
     shardmq passwd [-I iterations] -U passwordfile\n \
     -b : run in batch mode to allow passing passwords on the command line.\n \
     -c : create a new password file. This will overwrite existing files.\n \
     -D : delete the username rather than adding/updating its password.\n \
     -H : specify the hashing algorithm. Defaults to sha512-pbkdf2, which is recommended.\n      \
     Mosquitto 1.6 and earlier defaulted to sha512; argon2id needs Mosquitto 2.1 or shardmq.\n \
     -I : specify the number of hash iterations for sha512-pbkdf2 (default 101).\n \
     -U : update a plain text password file to use hashed passwords.\n \
     -S : (--scram) edit a scram_file: SCRAM-SHA-256 entries for MQTT 5.0 enhanced authentication\n      \
     (shardmq only; -I defaults to 4096 there).\n\n"
        .to_string()
}

/// Parses the arguments that follow `passwd`, as `mosquitto_passwd`'s `main` does.
pub fn parse_args(args: &[String]) -> Result<Request, Failure> {
    if args.is_empty() {
        return Err(Failure::Usage(1));
    }
    if matches!(args[0].as_str(), "-h" | "--help") {
        return Err(Failure::Usage(0));
    }
    let mut hash = HashType::Sha512Pbkdf2;
    let mut iterations = None;
    let (mut hash_set, mut scram) = (false, false);
    let (mut batch, mut create, mut delete, mut update) = (false, false, false, false);
    let mut idx = 0;
    while idx < args.len() {
        match args[idx].as_str() {
            "-H" => {
                let Some(name) = args.get(idx + 1) else {
                    return Err(Failure::msg(
                        "Error: -H argument given but not enough other arguments.",
                    ));
                };
                hash = match name.as_str() {
                    "sha512" => HashType::Sha512,
                    "sha512-pbkdf2" => HashType::Sha512Pbkdf2,
                    "argon2id" => HashType::Argon2id,
                    other => {
                        return Err(Failure::msg(format!("Error: Unknown hash type '{other}'")))
                    }
                };
                hash_set = true;
                idx += 1;
            }
            "-b" => batch = true,
            "-c" => create = true,
            "-D" => delete = true,
            "-I" => {
                let Some(count) = args.get(idx + 1) else {
                    return Err(Failure::msg(
                        "Error: -I argument given but not enough other arguments.",
                    ));
                };
                // Mosquitto uses atoi and refuses < 1; a count beyond a C int could not be read back.
                iterations = match count.trim().parse::<u32>() {
                    Ok(n) if (1..=i32::MAX as u32).contains(&n) => Some(n),
                    _ => return Err(Failure::msg("Error: Number of iterations must be > 0.")),
                };
                idx += 1;
            }
            "-U" => update = true,
            "-S" | "--scram" => scram = true,
            _ => break,
        }
        idx += 1;
    }
    let conflicts = [
        (create && delete, "-c and -D"),
        (create && update, "-c and -U"),
        (delete && update, "-D and -U"),
        (delete && batch, "-b and -D"),
        // A scram_file never holds plain passwords to convert, and has one hash of its own.
        (scram && update, "-S and -U"),
        (scram && hash_set, "-H and -S"),
    ];
    if let Some((_, which)) = conflicts.iter().find(|(bad, _)| *bad) {
        return Err(Failure::msg(format!(
            "Error: {which} cannot be used together."
        )));
    }
    let rest = &args[idx..];
    let action = if create {
        let needed = if batch { 3 } else { 2 };
        if rest.len() < needed {
            return Err(Failure::msg(if batch {
                "Error: -c argument given but password file, username, or password missing."
            } else {
                "Error: -c argument given but password file or username missing."
            }));
        }
        Action::Set {
            file: PathBuf::from(&rest[0]),
            username: rest[1].clone(),
            password: batch.then(|| rest[2].clone()),
            create: true,
        }
    } else if delete {
        if rest.len() < 2 {
            return Err(Failure::msg(
                "Error: -D argument given but password file or username missing.",
            ));
        }
        Action::Delete {
            file: PathBuf::from(&rest[0]),
            username: rest[1].clone(),
        }
    } else if update {
        if rest.len() != 1 {
            return Err(Failure::msg(
                "Error: -U argument given but password file missing.",
            ));
        }
        Action::Convert {
            file: PathBuf::from(&rest[0]),
        }
    } else if batch && rest.len() == 3 || !batch && rest.len() == 2 {
        Action::Set {
            file: PathBuf::from(&rest[0]),
            username: rest[1].clone(),
            password: batch.then(|| rest[2].clone()),
            create: false,
        }
    } else {
        return Err(Failure::Usage(1));
    };
    match &action {
        Action::Set {
            username, password, ..
        } => {
            check_username(username)?;
            if password.as_ref().is_some_and(|p| p.len() > MAX_LEN) {
                return Err(Failure::msg(
                    "Error: Password must be less than 65536 characters long.",
                ));
            }
        }
        Action::Delete { username, .. } => check_username(username)?,
        Action::Convert { .. } => {}
    }
    if scram {
        hash = HashType::Scram;
    }
    let iterations = iterations.unwrap_or(if scram {
        crate::auth::scram::DEFAULT_ITERATIONS
    } else {
        DEFAULT_PBKDF2_ITERATIONS
    });
    Ok(Request {
        action,
        hash,
        iterations,
    })
}

/// `is_username_valid`, plus: an empty username could never log in.
fn check_username(username: &str) -> Result<(), Failure> {
    if username.is_empty() {
        return Err(Failure::msg("Error: Username must not be empty."));
    }
    if username.len() > MAX_LEN {
        return Err(Failure::msg(
            "Error: Username must be less than 65536 characters long.",
        ));
    }
    if username.chars().any(char::is_control) {
        return Err(Failure::msg(
            "Error: Username must not contain control characters.",
        ));
    }
    if username.contains(':') {
        return Err(Failure::msg(
            "Error: Username must not contain the ':' character.",
        ));
    }
    Ok(())
}

/// Makes the password field for `password` with the requested hash.
pub fn hash_field(
    password: &[u8],
    hash: HashType,
    iterations: u32,
) -> Result<String, HashPasswordError> {
    match hash {
        HashType::Sha512 => hash_password_sha512(password),
        HashType::Sha512Pbkdf2 => hash_password_pbkdf2(password, iterations),
        // Mosquitto 2.1 uses fixed Argon2id parameters and ignores -I for them.
        HashType::Argon2id => hash_password_argon2id(password),
        // The username goes in front, as in a password file: `set_user` writes both files alike.
        HashType::Scram => {
            crate::auth::scram::make_field(password, iterations).map_err(|e| match e {
                crate::auth::scram::MakeEntryError::Random(e) => HashPasswordError::Random(e),
                _ => HashPasswordError::Iterations(iterations),
            })
        }
    }
}

/// One line of a password file: its bytes as read (with the newline, if any) and, unless it is a
/// comment or blank, its trimmed username and password fields.
struct Line<'a> {
    raw: &'a [u8],
    entry: Option<(&'a [u8], &'a [u8])>,
}

/// Splits `data` like `pwfile_iterate`: the username and password are the first two `strtok(":")`
/// tokens, trimmed; a line without both is corrupt (numbered from 1).
fn split_lines(data: &[u8]) -> Result<Vec<Line<'_>>, Failure> {
    let mut lines = Vec::new();
    for (index, raw) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with(b"#") {
            lines.push(Line { raw, entry: None });
            continue;
        }
        let mut tokens = raw.split(|&b| b == b':').filter(|t| !t.is_empty());
        let username = tokens.next().map(<[u8]>::trim_ascii).unwrap_or_default();
        let password = tokens.next().map(<[u8]>::trim_ascii).unwrap_or_default();
        if username.is_empty() || password.is_empty() {
            return Err(Failure::msg(format!(
                "Error: Corrupt password file at line {}.",
                index + 1
            )));
        }
        lines.push(Line {
            raw,
            entry: Some((username, password)),
        });
    }
    Ok(lines)
}

fn push_line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(line);
    if !line.ends_with(b"\n") {
        out.push(b'\n');
    }
}

/// The file with `username`'s entries replaced by `field`, or `field` appended when there is none.
/// Other lines are kept byte for byte, in order.
pub fn set_user(data: &[u8], username: &str, field: &str) -> Result<Vec<u8>, Failure> {
    let new_line = format!("{username}:{field}\n");
    let mut out = Vec::with_capacity(data.len() + new_line.len());
    let mut found = false;
    for line in split_lines(data)? {
        match line.entry {
            Some((user, _)) if user == username.as_bytes() => {
                found = true;
                out.extend_from_slice(new_line.as_bytes());
            }
            _ => push_line(&mut out, line.raw),
        }
    }
    if !found {
        out.extend_from_slice(new_line.as_bytes());
    }
    Ok(out)
}

/// The file without `username`'s entries; Mosquitto's warning (exit code 1) if there were none.
pub fn delete_user(data: &[u8], username: &str) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(data.len());
    let mut found = false;
    for line in split_lines(data)? {
        match line.entry {
            Some((user, _)) if user == username.as_bytes() => found = true,
            _ => push_line(&mut out, line.raw),
        }
    }
    if !found {
        return Err(Failure::msg(format!(
            "Warning: User {username} not found in password file."
        )));
    }
    Ok(out)
}

/// `-U`: every entry whose password field is not already a hash gets `hash(password)`. Returns the new
/// file and the (1-based) lines left alone because they were hashed already.
pub fn convert_plain(
    data: &[u8],
    mut hash: impl FnMut(&[u8]) -> Result<String, HashPasswordError>,
) -> Result<(Vec<u8>, Vec<usize>), Failure> {
    let mut out = Vec::with_capacity(data.len() * 2);
    let mut kept = Vec::new();
    for (index, line) in split_lines(data)?.into_iter().enumerate() {
        match line.entry {
            Some((user, password)) if !is_password_hash(password) => {
                let field = hash(password).map_err(hash_failure)?;
                out.extend_from_slice(user);
                out.push(b':');
                out.extend_from_slice(field.as_bytes());
                out.push(b'\n');
            }
            Some(_) => {
                kept.push(index + 1);
                push_line(&mut out, line.raw);
            }
            None => push_line(&mut out, line.raw),
        }
    }
    Ok((out, kept))
}

fn hash_failure(e: HashPasswordError) -> Failure {
    Failure::msg(format!("Error: Unable to hash password. {e}."))
}

/// An `io::Error` as C's `strerror` would say it (without Rust's " (os error N)").
fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

/// Writes `data` to `path` through a new file in the same directory and `rename`, so that readers
/// (the broker on SIGHUP) see the old file or the new one, never part of one. An existing file's mode
/// and (where permitted) owner carry over; a new file is 0600, as `mosquitto_passwd` makes it.
pub fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let existing = fs::metadata(path).ok();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.shardmq-passwd.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(data)?;
        if let Some(meta) = &existing {
            file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            // Keeping the owner needs privileges; without them the file stays ours, as a new one.
            let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
        }
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Where edits go: through a symlink to its target, as `mosquitto_passwd` (which uses `realpath`).
fn resolve(path: &Path) -> Result<PathBuf, Failure> {
    match fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(e) => Err(Failure::msg(format!(
            "Error reading password file: {}",
            strerror(&e)
        ))),
    }
}

/// Runs `shardmq passwd` with the arguments after `passwd`; returns the exit code.
pub fn run(args: &[String]) -> u8 {
    match execute(args) {
        Ok(()) => 0,
        Err(Failure::Usage(code)) => {
            print!("{}", usage());
            code
        }
        Err(Failure::Message(text, code)) => {
            eprintln!("{text}");
            code
        }
    }
}

fn execute(args: &[String]) -> Result<(), Failure> {
    let request = parse_args(args)?;
    let hash = |password: &[u8]| hash_field(password, request.hash, request.iterations);
    match &request.action {
        Action::Set {
            file,
            username,
            password,
            create,
        } => {
            let file = resolve(file)?;
            let data = if *create {
                Vec::new()
            } else {
                read_existing(&file)?
            };
            let password = match password {
                Some(p) => p.clone(),
                None => prompt_password()?,
            };
            let field = hash(password.as_bytes()).map_err(hash_failure)?;
            let data = set_user(&data, username, &field)?;
            write_back(&file, &data, *create)
        }
        Action::Delete { file, username } => {
            let file = resolve(file)?;
            let data = delete_user(&read_existing(&file)?, username)?;
            write_back(&file, &data, false)
        }
        Action::Convert { file } => {
            let file = resolve(file)?;
            let (data, kept) = convert_plain(&read_existing(&file)?, hash)?;
            for line in kept {
                eprintln!("Warning: line {line} already holds a password hash; left unchanged.");
            }
            write_back(&file, &data, false)
        }
    }
}

fn read_existing(file: &Path) -> Result<Vec<u8>, Failure> {
    fs::read(file).map_err(|e| {
        Failure::msg(format!(
            "Error: Unable to open password file {}. {}.",
            file.display(),
            strerror(&e)
        ))
    })
}

fn write_back(file: &Path, data: &[u8], create: bool) -> Result<(), Failure> {
    replace_file(file, data).map_err(|e| {
        Failure::msg(if create {
            format!(
                "Error: Unable to open file {} for writing. {}.",
                file.display(),
                strerror(&e)
            )
        } else {
            format!(
                "Error occurred updating password file {}. {}.",
                file.display(),
                strerror(&e)
            )
        })
    })
}

/// `get_password`: "Password: " then "Reenter password: ", without echo on a terminal; from stdin
/// lines otherwise. Empty: exit 1; different: exit 2, as Mosquitto.
fn prompt_password() -> Result<String, Failure> {
    let first = read_secret("Password: ")?;
    if first.is_empty() {
        return Err(Failure::msg("Error: Empty password."));
    }
    let second = read_secret("Reenter password: ")?;
    if second.is_empty() {
        return Err(Failure::msg("Error: Empty password."));
    }
    if first != second {
        return Err(Failure::Message(
            "Error: Passwords do not match.".to_string(),
            2,
        ));
    }
    if first.len() > MAX_LEN {
        return Err(Failure::msg(
            "Error: Password must be less than 65536 characters long.",
        ));
    }
    Ok(first)
}

fn read_secret(prompt: &str) -> Result<String, Failure> {
    print!("{prompt}");
    let _ = io::stdout().flush();
    let echo_off = EchoOff::new();
    let mut line = String::new();
    let read = io::stdin().lock().read_line(&mut line);
    drop(echo_off);
    println!();
    match read {
        Ok(0) | Err(_) => Ok(String::new()),
        Ok(_) => {
            let end = line.trim_end_matches(['\n', '\r']).len();
            line.truncate(end);
            Ok(line)
        }
    }
}

/// The terminal settings before echo was turned off, for the SIGINT / SIGTERM handler to restore.
static SAVED_TERMIOS: std::sync::OnceLock<libc::termios> = std::sync::OnceLock::new();

extern "C" fn restore_terminal_and_exit(_signal: libc::c_int) {
    if let Some(saved) = SAVED_TERMIOS.get() {
        // SAFETY: tcsetattr and _exit are async-signal-safe; `saved` is a valid termios.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
    }
    // SAFETY: ends the process without running anything that is not async-signal-safe.
    unsafe { libc::_exit(0) };
}

/// Turns terminal echo off for stdin while alive, when stdin is a terminal.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a zeroed, then filled, termios.
        unsafe {
            if libc::isatty(libc::STDIN_FILENO) != 1 {
                return EchoOff(None);
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return EchoOff(None);
            }
            let _ = SAVED_TERMIOS.set(saved);
            let handler = restore_terminal_and_exit as extern "C" fn(libc::c_int);
            libc::signal(libc::SIGINT, handler as libc::sighandler_t);
            libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
            let mut quiet = saved;
            // The newline is not echoed either; read_secret prints it, as get_password does.
            quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
    }
}

#[cfg(test)]
mod tests;
