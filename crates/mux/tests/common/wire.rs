//! A hand-driven "wire" between two sans-IO cores with synthetic time.
//!
//! Frames to `Destination::Address(addr)` arrive at `addr` with the sender's tag;
//! frames to `Destination::Reply(tag)` arrive at the tag's owner with no tag.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lp_frame::{MessageType, OwnedStreamFrame, StreamHeader};
use mux::{Core, Destination, Event, Inbound, LocalId, MuxConfig, Read, Write};

/// The core's timer contract: after `handle_timeout(now)`, the next deadline is
/// `None` or strictly later than `now`. A deadline that stays due is a driver that
/// spins (or, under a paused clock, a clock that can never move).
pub fn assert_timer_contract(core: &mut Core<u8, u8>, now: Instant, who: &str) {
    if let Some(d) = core.poll_timeout() {
        assert!(
            d > now,
            "timer contract broken at {who}: after handle_timeout the next deadline is \
             {:?} before now",
            now - d
        );
    }
}

/// Address of the first core (the opener in most tests).
pub const A: u8 = 1;
/// Address of the second core.
pub const B: u8 = 2;

/// The sender tag a core's anonymous messages carry.
pub fn tag_of(addr: u8) -> u8 {
    addr + 100
}

fn owner_of(tag: u8) -> u8 {
    tag - 100
}

/// One message on the wire.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Sending core.
    pub from: u8,
    /// Receiving core.
    pub to: u8,
    /// What the receiver's transport hands it.
    pub msg: Inbound<u8>,
    /// Reply SURBs the sender attached.
    pub surbs: u32,
}

impl Packet {
    /// The decoded stream header (every frame the cores send is a stream frame).
    pub fn header(&self) -> StreamHeader {
        OwnedStreamFrame::parse(self.msg.payload.clone())
            .expect("cores only send stream frames")
            .header
    }

    /// The frame's message type.
    pub fn kind(&self) -> MessageType {
        self.header().msg_type
    }
}

/// What a fault hook does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Deliver it.
    Deliver,
    /// Lose it.
    Drop,
    /// Deliver it twice.
    Duplicate,
    /// Put it at the back of the queue (delivered after everything queued now).
    Delay,
}

/// Two cores, a queue of in-flight packets, a synthetic clock and a log of every
/// packet sent.
pub struct Wire {
    /// Core at address [`A`].
    pub a: Core<u8, u8>,
    /// Core at address [`B`].
    pub b: Core<u8, u8>,
    /// The synthetic current time.
    pub now: Instant,
    /// When the wire was created.
    pub start: Instant,
    /// Packets sent and not yet delivered.
    pub queue: VecDeque<Packet>,
    /// Every packet ever sent, in order.
    pub log: Vec<Packet>,
    /// Largest `inbound_bytes()` seen at each core after any input.
    pub peak_inbound: [usize; 2],
    /// One-way latency of every packet (zero: delivered at the instant it was sent).
    pub latency: Duration,
    /// Packets on their way when the latency is not zero, with their arrival time.
    pub in_flight: Vec<(Instant, Packet)>,
}

impl Wire {
    /// Two cores with the given configurations.
    pub fn new(cfg_a: MuxConfig, cfg_b: MuxConfig) -> Self {
        let now = Instant::now();
        Self {
            a: Core::new(cfg_a.with_id_seed(Some(11))),
            b: Core::new(cfg_b.with_id_seed(Some(22))),
            now,
            start: now,
            queue: VecDeque::new(),
            log: Vec::new(),
            peak_inbound: [0, 0],
            latency: Duration::ZERO,
            in_flight: Vec::new(),
        }
    }

    /// Every packet takes `latency` to arrive (a delayed one twice as long), so RTT
    /// samples are real and timers race the network as they do on a mixnet.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Two cores with the default configuration.
    pub fn default_pair() -> Self {
        Self::new(MuxConfig::default(), MuxConfig::default())
    }

    /// The core at `addr`.
    pub fn core(&mut self, addr: u8) -> &mut Core<u8, u8> {
        match addr {
            A => &mut self.a,
            B => &mut self.b,
            _ => panic!("no core at address {addr}"),
        }
    }

    /// `Core::write` at `addr` at the current time.
    pub fn write(&mut self, addr: u8, local: LocalId, data: &[u8]) -> Write {
        let now = self.now;
        self.core(addr).write(now, local, data)
    }

    /// `Core::flush` at `addr` at the current time.
    pub fn flush(&mut self, addr: u8, local: LocalId) -> bool {
        let now = self.now;
        self.core(addr).flush(now, local)
    }

    /// `Core::shutdown` at `addr` at the current time.
    pub fn shutdown(&mut self, addr: u8, local: LocalId) -> bool {
        let now = self.now;
        self.core(addr).shutdown(now, local)
    }

    /// `Core::reset` at `addr` at the current time.
    pub fn reset(&mut self, addr: u8, local: LocalId, code: u32) {
        let now = self.now;
        self.core(addr).reset(now, local, code);
    }

    /// The application drops both halves of the stream at `addr`.
    pub fn drop_handle(&mut self, addr: u8, local: LocalId) {
        let now = self.now;
        self.core(addr).drop_handle(now, local, true, true);
    }

    /// `Core::read` at `addr` at the current time.
    pub fn read(&mut self, addr: u8, local: LocalId, buf: &mut [u8]) -> Read {
        let now = self.now;
        self.core(addr).read(now, local, buf)
    }

    /// Time since the wire was created.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Takes every frame both cores want to send now into the queue; returns how many.
    pub fn collect(&mut self) -> usize {
        let mut n = 0;
        for from in [A, B] {
            let now = self.now;
            while let Some(t) = self.core(from).poll_transmit(now, &|_| None) {
                let (to, sender_tag) = match t.to {
                    Destination::Address(addr) => (addr, Some(tag_of(from))),
                    Destination::Reply(tag) => (owner_of(tag), None),
                };
                let p = Packet {
                    from,
                    to,
                    msg: Inbound {
                        payload: t.payload,
                        sender_tag,
                    },
                    surbs: t.reply_surbs,
                };
                self.log.push(p.clone());
                self.queue.push_back(p);
                n += 1;
            }
        }
        n
    }

    /// Hands one packet to its receiver.
    pub fn deliver(&mut self, p: Packet) {
        let now = self.now;
        let to = p.to;
        self.core(to).handle_inbound(now, p.msg);
        self.note_inbound(to);
    }

    fn note_inbound(&mut self, addr: u8) {
        let i = usize::from(addr - 1);
        let bytes = self.core(addr).inbound_bytes();
        self.peak_inbound[i] = self.peak_inbound[i].max(bytes);
    }

    /// Collects and delivers until nothing more is sent at the current instant,
    /// asking `fate` what to do with each packet.
    pub fn pump_with(&mut self, fate: &mut dyn FnMut(&Packet) -> Fate) {
        let mut rounds = 0;
        loop {
            self.deliver_due();
            self.collect();
            if self.queue.is_empty() {
                return;
            }
            rounds += 1;
            assert!(rounds < 100_000, "the cores never go quiet");
            // Deliver what is queued now; what it triggers goes out next round.
            let batch: Vec<Packet> = self.queue.drain(..).collect();
            let mut delayed = Vec::new();
            if !self.latency.is_zero() {
                let at = self.now + self.latency;
                for p in batch {
                    match fate(&p) {
                        Fate::Deliver => self.in_flight.push((at, p)),
                        Fate::Drop => {}
                        Fate::Duplicate => {
                            self.in_flight.push((at, p.clone()));
                            self.in_flight.push((at + self.latency / 2, p));
                        }
                        Fate::Delay => self.in_flight.push((at + self.latency, p)),
                    }
                }
                self.deliver_due();
                continue;
            }
            for p in batch {
                match fate(&p) {
                    Fate::Deliver => self.deliver(p),
                    Fate::Drop => {}
                    Fate::Duplicate => {
                        self.deliver(p.clone());
                        self.deliver(p);
                    }
                    Fate::Delay => delayed.push(p),
                }
            }
            for p in delayed {
                self.deliver(p);
            }
        }
    }

    /// Delivers the packets in flight whose arrival time has come, in arrival order.
    fn deliver_due(&mut self) {
        let now = self.now;
        self.in_flight.sort_by_key(|(at, _)| *at);
        let due = self.in_flight.partition_point(|(at, _)| *at <= now);
        let arrived: Vec<_> = self.in_flight.drain(..due).collect();
        for (_, p) in arrived {
            self.deliver(p);
        }
    }

    /// Collects and delivers everything without faults.
    pub fn pump(&mut self) {
        self.pump_with(&mut |_| Fate::Deliver);
    }

    /// Moves the clock to the earliest timer of either core and fires it.
    /// Returns `false` when no timer is armed.
    pub fn advance(&mut self) -> bool {
        let arrival = self.in_flight.iter().map(|(at, _)| *at).min();
        let next = [self.a.poll_timeout(), self.b.poll_timeout(), arrival]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            return false;
        };
        if arrival.is_some_and(|at| at <= next) {
            // A packet arrives first: move the clock there and deliver it.
            self.now = self.now.max(next);
            self.deliver_due();
            return true;
        }
        if next > self.now {
            self.now = next;
        }
        let now = self.now;
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        assert_timer_contract(&mut self.a, now, "A");
        assert_timer_contract(&mut self.b, now, "B");
        self.note_inbound(A);
        self.note_inbound(B);
        true
    }

    /// Moves the clock forward by `d` (firing timers on the way).
    pub fn sleep(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            self.pump();
            let arrival = self.in_flight.iter().map(|(at, _)| *at).min();
            let next = [self.a.poll_timeout(), self.b.poll_timeout(), arrival]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.advance();
                }
                _ => break,
            }
        }
        self.now = until;
        self.a.handle_timeout(until);
        self.b.handle_timeout(until);
        assert_timer_contract(&mut self.a, until, "A");
        assert_timer_contract(&mut self.b, until, "B");
        self.pump();
    }

    /// Pumps (with faults) and fires timers until `done` holds or `limit` of
    /// synthetic time passed. Returns whether `done` held.
    pub fn run_with(
        &mut self,
        limit: Duration,
        fate: &mut dyn FnMut(&Packet) -> Fate,
        done: &mut dyn FnMut(&mut Wire) -> bool,
    ) -> bool {
        let deadline = self.now + limit;
        loop {
            self.pump_with(fate);
            if done(self) {
                return true;
            }
            if self.now >= deadline || !self.advance() {
                return done(self);
            }
        }
    }

    /// [`Wire::run_with`] without faults.
    pub fn run(&mut self, limit: Duration, done: &mut dyn FnMut(&mut Wire) -> bool) -> bool {
        self.run_with(limit, &mut |_| Fate::Deliver, done)
    }

    /// Opens a stream from A to B, runs the handshake and accepts it at B.
    pub fn open_pair(&mut self) -> (LocalId, LocalId) {
        let now = self.now;
        let (la, _) = self.a.open(now, B, None).expect("open");
        let mut lb = None;
        // One pump without latency; with latency, until the OpenAck is back.
        self.run(Duration::from_secs(60), &mut |w| {
            if lb.is_none() {
                lb = w.b.accept().map(|(l, _)| l);
            }
            lb.is_some() && w.a.established(la).unwrap_or(false)
        });
        let lb = lb.expect("B sees the stream");
        assert!(self.a.established(la).unwrap());
        (la, lb)
    }

    /// Writes all of `data` (must fit the credit and send buffer) and flushes.
    pub fn write_all(&mut self, addr: u8, local: LocalId, data: &[u8]) {
        let now = self.now;
        let core = self.core(addr);
        let mut off = 0;
        while off < data.len() {
            match core.write(now, local, &data[off..]) {
                Write::Accepted(n) => off += n,
                other => panic!("write of {} bytes at {off}: {other:?}", data.len()),
            }
        }
        core.flush(now, local);
    }

    /// Writes as much of `data` as the stream takes now; returns how much.
    pub fn write_some(&mut self, addr: u8, local: LocalId, data: &[u8]) -> usize {
        let now = self.now;
        let core = self.core(addr);
        let mut off = 0;
        while off < data.len() {
            match core.write(now, local, &data[off..]) {
                Write::Accepted(n) => off += n,
                Write::Blocked => break,
                Write::Failed(e) => panic!("write failed: {e}"),
            }
        }
        off
    }

    /// Reads everything available now into `out`; returns how the read ended
    /// (`Read::Pending`, `Read::Eof` or `Read::Failed`).
    pub fn read_available(&mut self, addr: u8, local: LocalId, out: &mut Vec<u8>) -> Read {
        let now = self.now;
        let core = self.core(addr);
        let mut buf = [0u8; 3000];
        loop {
            match core.read(now, local, &mut buf) {
                Read::Data(n) => out.extend_from_slice(&buf[..n]),
                end => return end,
            }
        }
    }

    /// Every event queued at `addr`.
    pub fn events(&mut self, addr: u8) -> Vec<Event> {
        let core = self.core(addr);
        std::iter::from_fn(|| core.poll_event()).collect()
    }

    /// Packets in the log of the given kind sent by `from`.
    pub fn sent(&self, from: u8, kind: MessageType) -> usize {
        self.log
            .iter()
            .filter(|p| p.from == from && p.kind() == kind)
            .count()
    }
}
