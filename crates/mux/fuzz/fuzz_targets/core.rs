//! Feeds arbitrary sequences of frames, time steps and application actions to the
//! sans-IO core and checks that it never panics, never exceeds its budgets (held and
//! promised) and keeps its timer contract.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lp_frame::{MessageType, StreamHeader, StreamId};
use mux::{Core, Inbound, MuxConfig};

const BUDGET: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let cfg = MuxConfig::default()
        .with_inbound_budget(BUDGET)
        .with_receive_window(64 * 1024)
        .with_id_seed(Some(1));
    let mut core = Core::<u8, u8>::new(cfg);
    let mut now = Instant::now();
    let mut locals = Vec::new();
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 8 {
            // A structured frame: id (1 byte), type, seq (1 byte), reserved, len, body.
            0..=2 => {
                if rest.len() < 5 {
                    break;
                }
                let (h, tail) = rest.split_at(5);
                let len = (h[4] as usize).min(tail.len());
                let (body, tail) = tail.split_at(len);
                rest = tail;
                let t = MessageType::ALL[h[1] as usize % MessageType::ALL.len()];
                let mut v = StreamHeader::new(StreamId::new(u64::from(h[0] % 4)), t, u32::from(h[2]))
                    .with_reserved(h[3])
                    .to_bytes()
                    .to_vec();
                v.extend_from_slice(body);
                let tag = if op % 3 == 0 { None } else { Some(op % 2) };
                core.handle_inbound(now, Inbound { payload: Bytes::from(v), sender_tag: tag });
                while let Some((l, _)) = core.accept() {
                    locals.push(l);
                }
            }
            // Raw bytes as a message.
            3 => {
                let len = rest.first().map_or(0, |&b| b as usize).min(rest.len().saturating_sub(1));
                let body = rest.get(1..1 + len).unwrap_or(&[]);
                core.handle_inbound(now, Inbound { payload: Bytes::copy_from_slice(body), sender_tag: Some(1) });
                rest = rest.get(1 + len..).unwrap_or(&[]);
            }
            // Time passes.
            4 => {
                let step = rest.first().copied().unwrap_or(1);
                rest = rest.get(1..).unwrap_or(&[]);
                now += Duration::from_millis(u64::from(step) * 97);
                core.handle_timeout(now);
                // The timer contract: nothing is due any more at `now`.
                if let Some(next) = core.poll_timeout() {
                    assert!(next > now, "timer contract: a deadline is still due");
                }
            }
            // Application actions.
            5 => {
                if let Ok((l, _)) = core.open(now, op, None) {
                    locals.push(l);
                }
            }
            6 => {
                if let Some(&l) = locals.get(op as usize % locals.len().max(1)) {
                    let _ = core.write(now, l, &[op; 700]);
                    let _ = core.read(now, l, &mut [0u8; 512]);
                }
            }
            _ => {
                if let Some(&l) = locals.last() {
                    match op % 3 {
                        0 => {
                            core.shutdown(now, l);
                        }
                        1 => core.reset(now, l, 9),
                        _ => core.drop_handle(now, l, true, true),
                    }
                }
            }
        }
        while core.poll_transmit(now, &|_| Some(3)).is_some() {}
        while core.poll_event().is_some() {}
        assert!(core.inbound_bytes() <= BUDGET, "inbound budget exceeded");
        assert!(core.promised_credit() <= BUDGET as u64, "more credit promised than the budget");
    }
});
