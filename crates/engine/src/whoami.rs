//! The user and host names restic records in snapshots, keys and locks.

/// The login name of the current user, from the environment or the password database.
pub fn user_name() -> String {
    if let Ok(u) = std::env::var("USER") {
        if !u.is_empty() {
            return u;
        }
    }
    let uid = rustix::process::getuid().as_raw();
    lookup_name("/etc/passwd", uid).unwrap_or_default()
}

/// The system host name.
pub fn host_name() -> String {
    let uts = rustix::system::uname();
    uts.nodename().to_string_lossy().into_owned()
}

/// Looks up the name for `id` in a passwd/group style file (`name:x:id:…`).
pub fn lookup_name(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next();
        (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}
