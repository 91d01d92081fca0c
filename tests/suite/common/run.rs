//! Running a command with given standard input and bounded time, its
//! output captured apart or merged into one pipe.

use super::wait_until;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

/// How long a child process may run before the test gives up on it.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What a finished command did.
#[derive(Debug)]
pub struct Run {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Everything written to stdout (and stderr, for a merged run).
    pub stdout: Vec<u8>,
    /// Everything written to stderr (empty for a merged run).
    pub stderr: Vec<u8>,
}

impl Run {
    /// stdout as text (lossy).
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (lossy).
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `cmd` with `stdin` as its input, stdout and stderr captured apart;
/// kills it and panics after [`RUN_LIMIT`].
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Run {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the command");
    let feeder = feed(child.stdin.take().expect("stdin"), stdin);
    let out = collect(child.stdout.take().expect("stdout"));
    let err = collect(child.stderr.take().expect("stderr"));
    let status = wait_bounded(&mut child);
    let _ = feeder.join();
    Run {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs `cmd` with stdout and stderr on one pipe (see
/// [`TestEnv::deliver_merged`]); kills it and panics after [`RUN_LIMIT`].
pub fn run_merged(cmd: &mut Command, stdin: &[u8]) -> Run {
    let (reader, writer) = std::io::pipe().expect("pipe");
    cmd.stdin(Stdio::piped())
        .stdout(writer.try_clone().expect("dup pipe"))
        .stderr(writer);
    let mut child = cmd.spawn().expect("spawn the command");
    // The Command keeps its copies of the write end; replace them so the
    // reader sees end-of-file when the child exits.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let feeder = feed(child.stdin.take().expect("stdin"), stdin);
    let out = collect(reader);
    let status = wait_bounded(&mut child);
    let _ = feeder.join();
    Run {
        code: status.code(),
        stdout: out.join().expect("output reader"),
        stderr: Vec::new(),
    }
}

/// Writes `data` to `stdin` in a thread, then closes it. A child that
/// exits without reading all of it is not an error here.
fn feed(mut stdin: ChildStdin, data: &[u8]) -> std::thread::JoinHandle<()> {
    let data = data.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    })
}

/// Reads `r` to its end in a thread.
fn collect(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Waits for `child` at most [`RUN_LIMIT`]; kills it and panics after that.
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let status = wait_until(RUN_LIMIT, Duration::from_millis(10), || {
        child.try_wait().expect("try_wait")
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the command ran longer than {RUN_LIMIT:?} and was killed");
    })
}
