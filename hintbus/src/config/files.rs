//! Files the configuration names (itself, `secret_file`, key files), read as the service will
//! read them.
//!
//! `--check` is often run as root, who reads everything, while the service runs as `hintbus`
//! (deploy/*.service): a check that said OK was followed by a service failing with
//! "Permission denied". Run as root, the check therefore asks whether the service user could
//! read each file, from the modes, owners and groups of the file and of every directory above
//! it (ACLs are not looked at). A permission error is always reported as one, never as a
//! missing file.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The user the service runs as.
#[derive(Debug, Clone)]
pub struct ServiceUser {
    pub name: String,
    uid: u32,
    /// Its primary group and the groups it is a member of.
    groups: Vec<u32>,
}

impl ServiceUser {
    /// `name` from the user database (NSS), with its groups; None if there is no such user.
    pub fn lookup(name: &str) -> Option<ServiceUser> {
        let cname = CString::new(name).ok()?;
        // SAFETY: getpwnam_r writes into `pwd` and `buf`, both ours and sized as passed; the
        // strings it points to live in `buf`, which is not read here.
        let (uid, gid) = unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut buf = vec![0 as libc::c_char; 1 << 16];
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
            if rc != 0 || found.is_null() {
                return None;
            }
            (pwd.pw_uid, pwd.pw_gid)
        };
        let mut groups = vec![0 as libc::gid_t; 64];
        loop {
            let mut count = groups.len() as libc::c_int;
            // SAFETY: `groups` holds `count` entries; getgrouplist writes at most that many and
            // sets `count` to the number it has (or needs, when it returns -1).
            let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
            if rc >= 0 {
                groups.truncate(count.max(0) as usize);
                break;
            }
            if groups.len() >= 1 << 16 {
                groups = vec![gid];
                break;
            }
            groups.resize((count.max(0) as usize).max(groups.len() * 2), 0);
        }
        if !groups.contains(&gid) {
            groups.push(gid);
        }
        Some(ServiceUser {
            name: name.to_string(),
            uid,
            groups,
        })
    }

    /// The user `--check` checks for: when run as root, `name` if it exists and is not root
    /// itself (files are then checked as it would read them); otherwise None (the files are
    /// read as the user running the check, whose own errors say what is wrong).
    pub fn for_check(name: &str) -> Option<ServiceUser> {
        // SAFETY: geteuid has no preconditions.
        (unsafe { libc::geteuid() } == 0)
            .then(|| Self::lookup(name))
            .flatten()
            .filter(|u| u.uid != 0)
    }

    fn may(&self, meta: &std::fs::Metadata, bit: u32) -> bool {
        let mode = meta.mode();
        if self.uid == 0 {
            true
        } else if meta.uid() == self.uid {
            mode >> 6 & bit != 0
        } else if self.groups.contains(&meta.gid()) {
            mode >> 3 & bit != 0
        } else {
            mode & bit != 0
        }
    }

    /// Whether this user can read `path`: every directory above it searchable, the file
    /// readable.
    pub fn may_read(&self, path: &Path) -> Result<(), String> {
        let real = std::fs::canonicalize(path).map_err(|e| io_error(&e))?;
        let who = format!("{} (uid {}), the user the service runs as", self.name, self.uid);
        for dir in real.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev() {
            let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {}", dir.display(), io_error(&e)))?;
            if !self.may(&meta, 0o1) {
                return Err(format!(
                    "permission denied for {who}: it cannot enter {} ({})",
                    dir.display(),
                    mode_owner(&meta)
                ));
            }
        }
        let meta = std::fs::metadata(&real).map_err(|e| io_error(&e))?;
        if !self.may(&meta, 0o4) {
            return Err(format!(
                "permission denied for {who}: the file is {}; give it to that user (chown {} {})",
                mode_owner(&meta),
                self.name,
                path.display()
            ));
        }
        Ok(())
    }
}

fn mode_owner(meta: &std::fs::Metadata) -> String {
    format!(
        "mode {:04o}, owner uid {}, group gid {}",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    )
}

/// An I/O error, a permission error said as one (the caller names the file).
pub fn io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            format!("permission denied for uid {uid} (this user): {e}")
        }
        _ => e.to_string(),
    }
}

/// Reads `path` as `user` would (as this process when None); the error does not repeat the
/// path.
pub fn read(path: &Path, user: Option<&ServiceUser>) -> Result<String, String> {
    if let Some(u) = user {
        u.may_read(path)?;
    }
    std::fs::read_to_string(path).map_err(|e| io_error(&e))
}
