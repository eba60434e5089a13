//! What the p2p figures are compared with, measured in the same run: nginx
//! serving the file to curl over plain HTTP and over HTTPS (TLS 1.3,
//! AES-GCM, a self-signed certificate made in the run), a bare
//! single-stream loopback copy written here, `openssl dgst -sha1` and
//! `sha1sum`. Also the test file itself.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::proc::{Proc, Res, WorkDir, exited_cpu_secs};

pub const MIB: u64 = 1024 * 1024;

/// The cached random file of `mib` MiB under `cache`, generated once.
pub fn cached_file(cache: &Path, mib: u64) -> Res<PathBuf> {
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let path = cache.join(format!("random-{mib}MiB.bin"));
    let size = mib * MIB;
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == size) {
        return Ok(path);
    }
    eprintln!("p2p-bench: generating {} ...", path.display());
    let tmp = path.with_extension("tmp");
    let err = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let mut f = File::create(&tmp).map_err(err)?;
    // xorshift64*: incompressible enough, and fast to make.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ mib;
    let mut buf = vec![0u8; 8 * MIB as usize];
    let mut left = size;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            w.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).map_err(err)?;
        left -= n as u64;
    }
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Reads the whole file once so that it sits in the page cache.
pub fn warm_page_cache(path: &Path) -> Res<()> {
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; 8 * MIB as usize];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
}

/// How fresh the machine's free memory is when a timed download starts.
///
/// On a VM with free page reporting (this project's machines: Firecracker
/// guests, `page_reporting` in the kernel log) the guest hands free memory
/// back to the host about two seconds after it is freed, and the next
/// touch of each page then costs a fault in the host. Writing a file into
/// the page cache is where a download touches fresh memory, so the same
/// 1 GiB buffered write takes about 1.7 s on memory that has sat free and
/// 0.25 s on memory a deleted file freed a moment ago. Left to chance,
/// that alone moved a figure by 4x between runs; every contender of a run
/// now starts from the same state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// Free memory has been handed back: wait [`COLD_SETTLE`] first.
    Cold,
    /// Free memory was just used: write and delete a scratch file a
    /// quarter larger than the download first.
    Warm,
}

/// How long free memory sits before a cold run (the kernel reports free
/// pages two seconds after they are freed).
pub const COLD_SETTLE: Duration = Duration::from_secs(4);

/// Brings free memory into `state` before a timed run that writes `bytes`
/// to disk, once the page cache has finished writing back what earlier
/// runs left ([`settle_writeback`]); the scratch file of a warm start
/// goes in `dir`.
pub fn set_memory(state: Memory, dir: &Path, bytes: u64) -> Res<()> {
    settle_writeback();
    match state {
        Memory::Cold => std::thread::sleep(COLD_SETTLE),
        Memory::Warm => {
            let path = dir.join("warm-memory.scratch");
            let r = write_scratch(&path, bytes + bytes / 4);
            let _ = std::fs::remove_file(&path);
            r.map_err(|e| format!("warming memory with {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The most dirty and under-writeback page-cache data (all devices) a
/// timed run starts with.
pub const WRITEBACK_SETTLED: u64 = 64 * MIB;
/// The longest [`settle_writeback`] waits.
pub const WRITEBACK_WAIT_MAX: Duration = Duration::from_secs(60);

/// Waits until the page cache's dirty and under-writeback data is under
/// [`WRITEBACK_SETTLED`], at most [`WRITEBACK_WAIT_MAX`] (then says so
/// and goes on). A run that starts writing back early (the p2p client on
/// a slow device, `sync_file_range`) leaves the device seconds of
/// writeback behind it, and the kernel throttles every writer against the
/// dirty and writeback pages of all devices: without this, the next
/// contender paid for the one before (a 4 GiB download on the fast disk
/// after the slow-device section ran at 255 MB/s instead of 1.3 GB/s).
pub fn settle_writeback() {
    let started = Instant::now();
    while let Some(left) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| unwritten(&m))
        .filter(|&n| n > WRITEBACK_SETTLED)
    {
        if started.elapsed() >= WRITEBACK_WAIT_MAX {
            eprintln!(
                "p2p-bench: the page cache still has {} MiB to write back after {:?}; timing anyway",
                left / MIB,
                WRITEBACK_WAIT_MAX
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Dirty plus under-writeback bytes in the text of `/proc/meminfo`.
fn unwritten(meminfo: &str) -> Option<u64> {
    let kib = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    };
    Some((kib("Dirty:")? + kib("Writeback:")?) * 1024)
}

fn write_scratch(path: &Path, mut left: u64) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    let buf = vec![1u8; MIB as usize];
    while left > 0 {
        let n = left.min(MIB) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// `name` on PATH (or in the sbin directories root's PATH may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Installs the missing Debian packages with apt-get (`apt-get update`
/// first). The log goes to `log`.
pub fn apt_install(packages: &[&str], log: &Path) -> Res<()> {
    if packages.is_empty() {
        return Ok(());
    }
    if find_program("apt-get").is_none() {
        return Err("apt-get not found".into());
    }
    eprintln!(
        "p2p-bench: installing {} with apt-get (log in {}) ...",
        packages.join(" "),
        log.display()
    );
    let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let run = |args: &[&str]| -> Res<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out.try_clone().map_err(|e| e.to_string())?)
            .status()
            .map_err(|e| format!("apt-get: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            Err(format!(
                "apt-get {} failed ({status}): {}",
                args[0],
                last.unwrap_or("no output")
            ))
        }
    };
    run(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(packages);
    run(&args)
}

/// nginx in the foreground, one process, private prefix and config,
/// serving `root` on a free loopback port over HTTP and, when a
/// certificate could be made, on another over HTTPS. Killed (and its
/// files, the key included, removed) when dropped.
pub struct Nginx {
    pub port: u16,
    /// The HTTPS side, or why there is none.
    pub https: Res<Https>,
    proc: Proc,
    _dir: WorkDir,
}

/// nginx's HTTPS listener: TLS 1.3 only, AES-128-GCM preferred (the
/// suite our own channels prefer), no session tickets; its self-signed
/// certificate, which curl is told to trust.
#[derive(Clone, Debug)]
pub struct Https {
    pub port: u16,
    pub cert: PathBuf,
}

/// The TLS 1.3 suites nginx offers, in its order of preference (the
/// order of our own channels, TLS-CONTRACT.md).
const TLS13_SUITES: &str =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

/// Makes a self-signed P-256 certificate for 127.0.0.1 in `dir` with
/// `openssl req`: (certificate, key) paths.
pub fn make_cert(openssl: &Path, dir: &Path) -> Res<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl req failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((cert, key))
}

impl Nginx {
    /// CPU seconds nginx (one process: `master_process off`) has used.
    pub fn cpu_secs(&self) -> Option<f64> {
        self.proc.cpu_secs()
    }

    /// `openssl`: the tool that makes the HTTPS side's certificate (none:
    /// no HTTPS side).
    pub fn start(nginx: &Path, root: &Path, base: &Path, openssl: Res<&Path>) -> Res<Nginx> {
        let dir = WorkDir::new(base, "nginx")?;
        let d = dir.path();
        let port = free_port()?;
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"] {
            std::fs::create_dir_all(d.join(sub)).map_err(|e| e.to_string())?;
        }
        let https = openssl.and_then(|o| {
            let (cert, key) = make_cert(o, d)?;
            Ok((free_port()?, cert, key))
        });
        let tls_server = match &https {
            Ok((tls_port, cert, key)) => format!(
                "\x20 server {{\n\
                 \x20   listen 127.0.0.1:{tls_port} ssl;\n\
                 \x20   ssl_certificate {cert};\n\
                 \x20   ssl_certificate_key {key};\n\
                 \x20   ssl_protocols TLSv1.3;\n\
                 \x20   ssl_conf_command Ciphersuites {TLS13_SUITES};\n\
                 \x20   ssl_prefer_server_ciphers on;\n\
                 \x20   ssl_session_tickets off;\n\
                 \x20   root {root};\n\
                 \x20 }}\n",
                cert = cert.display(),
                key = key.display(),
                root = root.display(),
            ),
            Err(_) => String::new(),
        };
        let conf = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/logs/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 client_body_temp_path {d}/body;\n\
             \x20 proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n\
             \x20 uwsgi_temp_path {d}/uwsgi;\n\
             \x20 scgi_temp_path {d}/scgi;\n\
             \x20 sendfile on;\n\
             \x20 tcp_nopush on;\n\
             \x20 default_type application/octet-stream;\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{port};\n\
             \x20   root {root};\n\
             \x20 }}\n\
             {tls_server}\
             }}\n",
            d = d.display(),
            root = root.display(),
        );
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let args = [
            "-p".to_string(),
            d.display().to_string(),
            "-e".to_string(),
            d.join("logs/error.log").display().to_string(),
            "-c".to_string(),
            conf_path.display().to_string(),
        ];
        let mut proc = Proc::spawn("nginx", nginx, &args, d, false)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(status) = proc.wait_exit(Duration::ZERO) {
                let log = std::fs::read_to_string(d.join("logs/error.log")).unwrap_or_default();
                return Err(format!(
                    "nginx exited ({status}): {}",
                    proc.first_error().unwrap_or_else(|| log
                        .lines()
                        .last()
                        .unwrap_or("")
                        .to_string())
                ));
            }
            if Instant::now() >= deadline {
                return Err("nginx did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Nginx {
            port,
            https: https.map(|(port, cert, _)| Https { port, cert }),
            proc,
            _dir: dir,
        })
    }
}

/// One curl run: seconds from start to exit, and curl's CPU seconds.
#[derive(Clone, Copy, Debug)]
pub struct CurlRun {
    pub secs: f64,
    /// User and system CPU seconds of curl, read from its exited process
    /// before it is reaped (`None` where that failed).
    pub cpu: Option<f64>,
}

/// `curl` fetching `name` from nginx into `dest`, over HTTPS (TLS 1.3,
/// trusting only nginx's certificate) when `https` is given.
pub fn curl(
    curl: &Path,
    port: u16,
    https: Option<&Https>,
    name: &str,
    dest: &Path,
) -> Res<CurlRun> {
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--fail", "--noproxy", "*", "-o"])
        .arg(dest);
    match https {
        None => cmd.arg(format!("http://127.0.0.1:{port}/{name}")),
        Some(h) => cmd
            .args(["--tlsv1.3", "--cacert"])
            .arg(&h.cert)
            .arg(format!("https://127.0.0.1:{}/{name}", h.port)),
    };
    let t0 = Instant::now();
    // stderr holds at most curl's one error line: it cannot fill the pipe
    // while curl is waited for.
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("curl: {e}"))?;
    let cpu = exited_cpu_secs(&child);
    let secs = t0.elapsed().as_secs_f64();
    let out = child.wait_with_output().map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(CurlRun { secs, cpu })
}

/// Bytes per `read` / `write` in the bare copy.
const BARE_BUF: usize = 4 * MIB as usize;

/// The bare cost of moving the file over loopback to disk: one TCP stream,
/// a sender thread reading the file in 4 MiB blocks, a receiver writing
/// what it reads to `dest`; no framing, no verification. Seconds from
/// connect to the destination closed.
pub fn bare_copy(src: &Path, dest: &Path) -> Res<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let src = src.to_path_buf();
    let t0 = Instant::now();
    let sender = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut f = File::open(&src)?;
        let mut buf = vec![0u8; BARE_BUF];
        let mut total = 0;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            s.write_all(&buf[..n])?;
            total += n as u64;
        }
    });
    let received = (|| -> std::io::Result<u64> {
        let mut s = TcpStream::connect(addr)?;
        let mut out = File::create(dest)?;
        let mut buf = vec![0u8; BARE_BUF];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            out.write_all(&buf[..n])?;
            total += n as u64;
        }
    })();
    let secs = t0.elapsed().as_secs_f64();
    let sent = sender
        .join()
        .map_err(|_| "bare copy: the sender panicked".to_string())?
        .map_err(|e| format!("bare copy: sending: {e}"))?;
    let received = received.map_err(|e| format!("bare copy: receiving: {e}"))?;
    if sent != received {
        return Err(format!("bare copy: sent {sent} bytes, received {received}"));
    }
    Ok(secs)
}

/// Runs a hashing tool on `path`: seconds from start to exit, and the
/// first hex word of its output that is 40 characters long.
pub fn hash_tool(program: &Path, args: &[&str], path: &Path) -> Res<(f64, String)> {
    let t0 = Instant::now();
    let out = Command::new(program)
        .args(args)
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 40)
        .unwrap_or("")
        .to_string();
    Ok((secs, hex))
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Res<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dirty and Writeback are read from their own lines (not from
    /// WritebackTmp, which comes after Writeback); a text without them
    /// reads as unknown.
    #[test]
    fn unwritten_adds_dirty_and_writeback() {
        let m = "MemTotal:       24000000 kB\nDirty:             465096 kB\n\
                 Writeback:       1147904 kB\nWritebackTmp:          7 kB\n";
        assert_eq!(unwritten(m), Some((465_096 + 1_147_904) * 1024));
        assert_eq!(unwritten("Dirty: 1 kB\n"), None);
        assert_eq!(unwritten(""), None);
    }
}
