//! Process-level tests of the `nym-stream` command: a hub, a service mapper, a forwarder
//! and a SOCKS5 proxy as separate processes on ephemeral loopback ports, with Rust TCP
//! servers as targets. Every wait is bounded.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_nym-stream");

/// A running `nym-stream` process: its first stdout lines and everything on stderr.
struct Proc {
    _child: Child,
    lines: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `nym-stream args…` and waits for `stdout_lines` lines on stdout.
    async fn start(args: &[&str], stdout_lines: usize) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the nym-stream binary starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut lines = BufReader::new(err_pipe).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut lines = Vec::new();
        for _ in 0..stdout_lines {
            match timeout(LIMIT, out.next_line()).await {
                Ok(Ok(Some(l))) => lines.push(l),
                other => panic!(
                    "nym-stream {args:?} printed {lines:?} then {other:?}; stderr: {}",
                    stderr.lock().unwrap()
                ),
            }
        }
        // Keep draining stdout so the process never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        Proc {
            _child: child,
            lines,
            stderr,
        }
    }

    /// The last word of stdout line `i` ("hub listening on ADDR" → ADDR).
    fn word(&self, i: usize) -> String {
        self.lines[i].split_whitespace().last().unwrap().to_string()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

async fn hub() -> (Proc, String) {
    let p = Proc::start(
        &[
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--preset",
            "instant",
            "-q",
        ],
        1,
    )
    .await;
    let addr = p.word(0);
    (p, format!("hub:{addr}"))
}

/// A service mapping virtual port 80 to `target`, with `extra` arguments; returns its
/// address.
async fn serve(net: &str, target: SocketAddr, extra: &[&str]) -> (Proc, String) {
    let map = format!("80={target}");
    let mut args = vec![
        "serve",
        "--network",
        net,
        "--map",
        map.as_str(),
        "--status-interval",
        "0",
    ];
    args.extend_from_slice(extra);
    let p = Proc::start(&args, 2).await;
    let addr = p.word(0);
    (p, addr)
}

async fn forward(net: &str, to: &str) -> (Proc, SocketAddr) {
    let p = Proc::start(
        &[
            "forward",
            "--network",
            net,
            "--listen",
            "127.0.0.1:0",
            "--to",
            to,
            "--status-interval",
            "0",
        ],
        1,
    )
    .await;
    // "forwarding ADDR -> SERVICE"
    let addr = p.lines[0]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (p, addr)
}

/// A TCP echo server: echoes each connection until EOF, then closes its side.
async fn echo_target() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(73).wrapping_add(seed))
        .collect()
}

/// Sends `data`, half-closes, and reads the answer to EOF.
async fn round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let data = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    writer.await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_through_forward_byte_exact_both_ways() {
    timeout(LIMIT, async {
        let (_hub, net) = hub().await;
        let (_srv, addr) = serve(&net, echo_target().await, &[]).await;
        let (_fwd, local) = forward(&net, &format!("{addr}:80")).await;
        let data = payload(10 << 20, 1);
        let got = round_trip(local, &data).await;
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes differ");
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_connections() {
    timeout(LIMIT, async {
        let (_hub, net) = hub().await;
        let (_srv, addr) = serve(&net, echo_target().await, &[]).await;
        let (_fwd, local) = forward(&net, &format!("{addr}:80")).await;
        let tasks: Vec<_> = (0..20u8)
            .map(|i| {
                tokio::spawn(async move {
                    let data = payload(64 * 1024, i);
                    assert!(round_trip(local, &data).await == data, "connection {i}");
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_close_is_carried_through() {
    timeout(LIMIT, async {
        // The target reads to EOF, then answers, then closes.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            s.read_to_end(&mut req).await.unwrap();
            s.write_all(format!("got {} bytes", req.len()).as_bytes())
                .await
                .unwrap();
            s.shutdown().await.unwrap();
        });
        let (_hub, net) = hub().await;
        let (_srv, addr) = serve(&net, target, &[]).await;
        let (_fwd, local) = forward(&net, &format!("{addr}:80")).await;
        let got = round_trip(local, b"question").await;
        assert_eq!(got, b"got 8 bytes");
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_down_or_unmapped_closes_the_client_promptly() {
    timeout(LIMIT, async {
        // A port nobody listens on.
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let (_hub, net) = hub().await;
        let (srv, addr) = serve(&net, dead, &[]).await;
        for (port, why) in [(80, "target"), (81, "not mapped")] {
            let (_fwd, local) = forward(&net, &format!("{addr}:{port}")).await;
            let mut s = TcpStream::connect(local).await.unwrap();
            s.write_all(b"hello?").await.unwrap();
            let mut buf = [0u8; 16];
            let r = timeout(Duration::from_secs(15), s.read(&mut buf))
                .await
                .expect("closed promptly");
            assert!(matches!(r, Ok(0) | Err(_)), "port {port}: {r:?}");
            // The service logs the refusal with its reason.
            timeout(Duration::from_secs(10), async {
                while !srv.stderr().contains(why) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("no {why:?} in the service's log: {}", srv.stderr()));
        }
    })
    .await
    .expect("in time");
}

async fn socks_request(proxy: SocketAddr, head: &[u8], request: &[u8]) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(head).await.unwrap();
    let mut greet = [0u8; 2];
    s.read_exact(&mut greet).await.unwrap();
    assert_eq!(greet, [5, 0]);
    s.write_all(request).await.unwrap();
    let mut reply = vec![0u8; 10];
    let n = timeout(Duration::from_secs(15), s.read_exact(&mut reply))
        .await
        .expect("a reply in time");
    if n.is_err() {
        reply.clear();
    }
    (s, reply)
}

fn domain_request(cmd: u8, host: &str, port: u16) -> Vec<u8> {
    let mut r = vec![5, cmd, 0, 3, host.len() as u8];
    r.extend_from_slice(host.as_bytes());
    r.extend_from_slice(&port.to_be_bytes());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_reaches_services_and_refuses_everything_else() {
    timeout(LIMIT, async {
        let (_hub, net) = hub().await;
        let (srv, _addr) = serve(&net, echo_target().await, &[]).await;
        let host = srv.word(1);
        assert!(host.ends_with(".sim"), "{host}");
        let p = Proc::start(
            &[
                "socks5",
                "--network",
                &net,
                "--listen",
                "127.0.0.1:0",
                "--status-interval",
                "0",
            ],
            1,
        )
        .await;
        let proxy: SocketAddr = p.word(0).parse().unwrap();
        // Happy path.
        let (mut s, reply) = socks_request(proxy, &[5, 1, 0], &domain_request(1, &host, 80)).await;
        assert_eq!(reply[..2], [5, 0]);
        s.write_all(b"through socks").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"through socks");
        // BIND and UDP ASSOCIATE: command not supported.
        for cmd in [2u8, 3] {
            let (_, reply) =
                socks_request(proxy, &[5, 1, 0], &domain_request(cmd, &host, 80)).await;
            assert_eq!(reply[1], 0x07, "command {cmd}");
        }
        // An IP address or an ordinary hostname: not allowed (no exit to the internet).
        let (_, reply) = socks_request(proxy, &[5, 1, 0], &[5, 1, 0, 1, 1, 1, 1, 1, 0, 80]).await;
        assert_eq!(reply[1], 0x02);
        let (_, reply) =
            socks_request(proxy, &[5, 1, 0], &domain_request(1, "example.com", 80)).await;
        assert_eq!(reply[1], 0x02);
        // An unknown address type.
        let (_, reply) = socks_request(proxy, &[5, 1, 0], &[5, 1, 0, 9]).await;
        assert_eq!(reply[1], 0x08);
        // No acceptable method: 0xFF and closed.
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(&[5, 1, 2]).await.unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).await.unwrap();
        assert_eq!(m, [5, 0xff]);
        // Wrong version, truncated lengths: closed, nothing else affected.
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(&[4, 1, 0, 80, 1, 2, 3, 4, 0]).await.unwrap();
        let mut buf = [0u8; 8];
        assert!(matches!(
            timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .unwrap(),
            Ok(0) | Err(_)
        ));
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(&[5, 1, 0, 5, 1, 0, 3, 40, b'a']).await.unwrap();
        drop(s);
        // Still serving.
        let (mut s, reply) = socks_request(proxy, &[5, 1, 0], &domain_request(1, &host, 80)).await;
        assert_eq!(reply[..2], [5, 0]);
        s.write_all(b"again").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"again");
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_pipes_stdin_and_stdout_through_a_service() {
    timeout(LIMIT, async {
        let (_hub, net) = hub().await;
        let (_srv, addr) = serve(&net, echo_target().await, &[]).await;
        let mut child = Command::new(BIN)
            .args(["connect", "--network", &net, &format!("{addr}:80"), "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let data = payload(300_000, 9);
        let mut stdin = child.stdin.take().unwrap();
        let input = data.clone();
        tokio::spawn(async move {
            stdin.write_all(&input).await.unwrap();
            drop(stdin);
        });
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == data,
            "piped bytes differ ({} bytes back)",
            out.stdout.len()
        );
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_one_clear_line_and_a_failure_exit() {
    timeout(LIMIT, async {
        let run = |args: &'static [&'static str]| async move {
            Command::new(BIN)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .await
                .unwrap()
        };
        // No hub there.
        let out = run(&[
            "serve",
            "--network",
            "hub:127.0.0.1:9",
            "--map",
            "80=127.0.0.1:8080",
        ])
        .await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("hub") && err.contains("127.0.0.1:9"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        // Malformed flags and addresses.
        for args in [
            &["serve", "--map", "eighty=127.0.0.1:1"][..],
            &["forward", "--listen", "127.0.0.1:0", "--to", "nowhere:80"],
            &["connect", "sim:12:80"],
            &["hub", "--preset", "sunny", "--listen", "127.0.0.1:0"],
            &[
                "serve",
                "--network",
                "carrier-pigeon",
                "--map",
                "1=127.0.0.1:1",
            ],
        ] {
            let out = run(args).await;
            assert!(!out.status.success(), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !err.is_empty() && !err.contains("panicked"),
                "{args:?}: {err}"
            );
        }
        // A port already in use.
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().to_string();
        let out = Command::new(BIN)
            .args(["hub", "--listen", &port])
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&port), "{err}");
    })
    .await
    .expect("in time");
}

/// A target that answers and closes before the client finished sending (HTTP/1.0 style):
/// both ends still see EOF and the tunnel ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_closes_first_ends_the_tunnel() {
    timeout(LIMIT, async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = [0u8; 8];
            s.read_exact(&mut req).await.unwrap();
            s.write_all(b"answer and bye").await.unwrap();
            s.shutdown().await.unwrap();
            // Keep reading until the client's FIN comes through the tunnel.
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
        });
        let (_hub, net) = hub().await;
        let (srv, addr) = serve(&net, target, &[]).await;
        let (_fwd, local) = forward(&net, &format!("{addr}:80")).await;
        let mut s = TcpStream::connect(local).await.unwrap();
        s.write_all(b"question").await.unwrap();
        let mut got = Vec::new();
        timeout(Duration::from_secs(20), s.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("no EOF from the tunnel; service log: {}", srv.stderr()))
            .unwrap();
        assert_eq!(got, b"answer and bye");
    })
    .await
    .expect("in time");
}

/// A peer gets at most `--max-per-peer` tunnels at once: the next is refused (its TCP
/// connection closed, the reason logged) while the first keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_beyond_the_per_peer_limit_are_refused() {
    timeout(LIMIT, async {
        let (_hub, net) = hub().await;
        let (srv, addr) = serve(&net, echo_target().await, &["--max-per-peer", "1"]).await;
        let (_fwd, local) = forward(&net, &format!("{addr}:80")).await;
        // The first tunnel is open (its echo came back) and stays open.
        let mut first = TcpStream::connect(local).await.unwrap();
        first.write_all(b"one").await.unwrap();
        let mut echo = [0u8; 3];
        first.read_exact(&mut echo).await.unwrap();
        // A second one from the same forwarder (the same peer) is refused.
        // The refusal needs no data from us, so under load it can beat the end of our
        // connect or our write (seen as EPIPE); either way the connection is closed
        // and carries nothing.
        if let Ok(mut second) = TcpStream::connect(local).await {
            let _ = second.write_all(b"two").await;
            let mut buf = [0u8; 8];
            let r = timeout(Duration::from_secs(15), second.read(&mut buf))
                .await
                .expect("closed promptly");
            assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        }
        timeout(Duration::from_secs(10), async {
            while !srv.stderr().contains("from this peer") {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no limit refusal in the service's log: {}", srv.stderr()));
        // The first still works.
        first.write_all(b"!").await.unwrap();
        let mut one = [0u8; 1];
        first.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"!");
    })
    .await
    .expect("in time");
}
