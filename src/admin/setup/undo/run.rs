//! `gitlab-mailgate setup --undo`: puts back what the state file records
//! (see the parent module), newest change first, then `postfix check` and
//! reload. A second run finds no state file and says nothing changed.

use super::*;

/// How one recorded change stands now.
enum Now {
    /// Still setup's value: put it back.
    Undo(String),
    /// Already as before setup.
    Same,
    /// Changed since setup: left alone.
    Changed(String),
}

/// Runs `--undo` with the record at `state_path`; exit 1 when something
/// could not be put back (it stays in the record).
pub fn undo(state_path: &Path, dry_run: bool) -> ExitCode {
    match undo_all(state_path, dry_run) {
        Ok((changes, kept)) => {
            match (changes, dry_run) {
                (0, _) => println!("setup --undo: nothing changed"),
                (n, true) => println!("setup --undo: dry run, {n} change(s) not made"),
                (n, false) => println!("setup --undo: {n} change(s) made"),
            }
            if kept == 0 {
                ExitCode::SUCCESS
            } else {
                println!(
                    "FAIL  setup --undo: {kept} setting(s) changed since setup were left alone; \
                     they stay in {} for another --undo",
                    state_path.display()
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!("FAIL  setup --undo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Returns the changes made and the records kept.
fn undo_all(state_path: &Path, dry_run: bool) -> Result<(usize, usize), String> {
    let Some(mut state) = load(state_path)? else {
        println!("same  nothing to undo: no {}", state_path.display());
        return Ok((0, 0));
    };
    let pf = Postfix {
        config_dir: state.postfix_config.clone(),
    };
    let verb = if dry_run { "would" } else { "change" };
    let mut changes = 0;
    let mut report = |what: &str, now: Now| match now {
        Now::Undo(how) => {
            changes += 1;
            println!("{verb}  {how}");
            true
        }
        Now::Same => {
            println!("same  {what} as before setup");
            true
        }
        Now::Changed(why) => {
            println!("keep  {what}: {why}");
            false
        }
    };

    let mut kept_main = Vec::new();
    for m in std::mem::take(&mut state.main).into_iter().rev() {
        let done = report(&m.name, main_now(&pf, &m)?);
        if done && !dry_run && pf.explicit(&m.name)? != m.old {
            pf.set_main(&m.name, m.old.as_deref())?;
        }
        if !done {
            kept_main.insert(0, m);
        }
    }
    let mut kept_master = Vec::new();
    for m in std::mem::take(&mut state.master).into_iter().rev() {
        let (now, by_hand) = master_now(&pf, &m)?;
        let done = report(&m.field, now);
        if done && !dry_run {
            if by_hand {
                put_entry(&pf, &m)?;
            } else if pf.master_field(&m.field)? != m.old {
                pf.set_master_field(&m.field, &m.old)?;
            }
        }
        if !done {
            kept_master.insert(0, m);
        }
    }
    let mut kept_file = Vec::new();
    for f in std::mem::take(&mut state.file).into_iter().rev() {
        let current = std::fs::read_to_string(&f.path).ok();
        let now = if current == f.old {
            Now::Same
        } else if current.as_deref() == Some(f.new.as_str()) {
            Now::Undo(match &f.old {
                None => format!("remove {}", f.path.display()),
                Some(_) => format!("write {} as before setup", f.path.display()),
            })
        } else {
            Now::Changed("changed since setup".into())
        };
        let fixing = matches!(now, Now::Undo(_));
        let done = report(&f.path.display().to_string(), now);
        if fixing && !dry_run {
            match &f.old {
                None => std::fs::remove_file(&f.path),
                Some(old) => std::fs::write(&f.path, old),
            }
            .map_err(|e| format!("{}: {e}", f.path.display()))?;
        }
        if !done {
            kept_file.insert(0, f);
        }
    }
    if changes > 0 && !dry_run {
        let reloaded = pf.check_and_reload()?;
        println!(
            "ok    {}{}",
            pf.command("postfix", &["check"]),
            if reloaded { ", postfix reload" } else { "" }
        );
    }
    if state.systemd_socket && !Path::new("/run/systemd/system").exists() {
        println!("note  systemd is not running: gitlab-mailgate.socket left as it is");
    } else if state.systemd_socket {
        changes += 1;
        println!("{verb}  systemctl disable --now gitlab-mailgate.socket gitlab-mailgate.service");
        if !dry_run {
            let status = Command::new("systemctl")
                .args([
                    "disable",
                    "--now",
                    "gitlab-mailgate.socket",
                    "gitlab-mailgate.service",
                ])
                .status()
                .map_err(|e| format!("cannot run systemctl: {e}"))?;
            if !status.success() {
                return Err(format!("systemctl disable --now failed ({status})"));
            }
        }
    }
    state.systemd_socket = false;
    let kept = kept_main.len() + kept_master.len() + kept_file.len();
    (state.main, state.master, state.file) = (kept_main, kept_master, kept_file);
    if !dry_run {
        save(state_path, &state)?;
    }
    Ok((changes, kept))
}

fn main_now(pf: &Postfix, m: &Main) -> Result<Now, String> {
    let current = pf.explicit(&m.name)?;
    Ok(if current == m.old {
        Now::Same
    } else if current.as_deref() == Some(m.new.as_str()) {
        let how = match &m.old {
            Some(old) => pf.command("postconf", &["-e", &format!("{}={old}", m.name)]),
            None => pf.command("postconf", &["-X", &m.name]),
        };
        Now::Undo(how)
    } else {
        Now::Changed(format!(
            "set to {:?} since setup set it to {:?}",
            current.unwrap_or_default(),
            m.new
        ))
    })
}

/// How the entry stands, and whether its text goes back whole (it reads
/// as setup left it) or only the field (through `postconf -F`).
fn master_now(pf: &Postfix, m: &Master) -> Result<(Now, bool), String> {
    let entry = master_entry(pf, &m.field)?;
    if entry == m.old_entry {
        return Ok((Now::Same, false));
    }
    let master_cf = master_path(pf)?;
    if entry == m.new_entry {
        let how = format!(
            "{} as before setup ({}={})",
            master_cf.display(),
            m.field,
            m.old
        );
        return Ok((Now::Undo(how), true));
    }
    let value = pf.master_field(&m.field)?;
    let now = if value == m.old {
        Now::Same
    } else if value == m.new {
        Now::Undo(pf.command("postconf", &["-F", &format!("{}={}", m.field, m.old)]))
    } else {
        Now::Changed(format!(
            "set to {value:?} since setup set it to {:?}",
            m.new
        ))
    };
    Ok((now, false))
}

/// Puts the entry's text before setup back into master.cf.
fn put_entry(pf: &Postfix, m: &Master) -> Result<(), String> {
    let path = master_path(pf)?;
    let text = read_master(pf)?;
    let (a, b) = entry_span(&text, &m.field)
        .ok_or_else(|| format!("{}: no entry for {}", path.display(), m.field))?;
    let mode = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode();
    let text = format!("{}{}{}", &text[..a], m.old_entry, &text[b..]);
    replace(&path, &text, mode & 0o7777)
}
